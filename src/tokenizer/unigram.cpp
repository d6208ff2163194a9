#include "tokenizer/unigram.h"

#include <algorithm>
#include <limits>

#include "mlxgp/error.h"
#include "tokenizer/utf8.h"

namespace mlxgp::tok {

namespace {
// tokenizers' K_UNK_PENALTY: an unknown character scores this far below the worst piece.
constexpr double kUnkPenalty = 10.0;
}  // namespace

Unigram::Unigram(std::vector<std::pair<std::string, double>> pieces, std::optional<int> unk_id, bool byte_fallback)
    : pieces_(std::move(pieces)), unk_id_(unk_id), byte_fallback_(byte_fallback) {
  if (unk_id_ && pieces_.empty()) fail("tokenizer", "Unigram model has an unk_id but an empty vocabulary");
  if (unk_id_ && (*unk_id_ < 0 || *unk_id_ >= static_cast<int>(pieces_.size())))
    fail("tokenizer", "Unigram unk_id " + std::to_string(*unk_id_) + " is outside the vocabulary");
  min_score_ = std::numeric_limits<double>::infinity();
  vocab_.reserve(pieces_.size());
  for (size_t id = 0; id < pieces_.size(); ++id) {
    const auto& [piece, score] = pieces_[id];
    vocab_.insert_or_assign(piece, static_cast<int>(id));  // a later duplicate wins, as in tokenizers
    min_score_ = std::min(min_score_, score);
    int node = 0;
    for (unsigned char b : piece) {
      int c = child(node, b);
      if (c < 0) {
        c = static_cast<int>(trie_.size());
        trie_.emplace_back();
        auto& next = trie_[node].next;
        next.insert(std::lower_bound(next.begin(), next.end(), std::make_pair(b, 0)), {b, c});
      }
      node = c;
    }
    if (!piece.empty()) trie_[node].id = static_cast<int>(id);
  }
  // Trie ids must name the id the vocabulary maps the piece to (duplicates: the last).
  for (auto& n : trie_)
    if (n.id >= 0) n.id = vocab_.at(pieces_[n.id].first);
}

int Unigram::child(int node, unsigned char b) const {
  const auto& next = trie_[node].next;
  auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(b, 0));
  return it != next.end() && it->first == b ? it->second : -1;
}

std::vector<std::pair<int, std::string>> Unigram::extra_tokens() const {
  std::vector<std::pair<int, std::string>> out;
  for (size_t id = 0; id < pieces_.size(); ++id)
    if (vocab_.at(pieces_[id].first) != static_cast<int>(id)) out.emplace_back(static_cast<int>(id), pieces_[id].first);
  return out;
}

// tokenizers' Unigram::encode_optimized: for each end position the best path reaching it; a
// position no single-character piece covers gets an unk node. Ties keep the first candidate.
void Unigram::segment(std::string_view word, std::vector<std::string_view>& out) const {
  struct Best {
    double score = 0;
    int start = -1;
    int id = 0;
  };
  const size_t n = word.size();
  std::vector<Best> best(n + 1);
  const double unk_score = min_score_ - kUnkPenalty;
  size_t pos = 0;
  while (pos < n) {
    double here = best[pos].score;
    size_t mblen = std::min(n - pos, utf8_len(static_cast<unsigned char>(word[pos])));
    bool single = false;
    int node = 0;
    for (size_t k = pos; k < n; ++k) {
      node = child(node, static_cast<unsigned char>(word[k]));
      if (node < 0) break;
      int id = trie_[node].id;
      if (id < 0) continue;
      size_t end = k + 1;
      double cand = pieces_[id].second + here;
      Best& t = best[end];
      if (t.start < 0 || cand > t.score) t = {cand, static_cast<int>(pos), id};
      if (end - pos == mblen) single = true;
    }
    if (!single) {
      if (!unk_id_) fail("tokenizer", "Unigram model met an unknown character but has no unk_id");
      Best& t = best[pos + mblen];
      double cand = unk_score + here;
      if (t.start < 0 || cand > t.score) t = {cand, static_cast<int>(pos), *unk_id_};
    }
    pos += mblen;
  }
  // Walk back; runs of unk nodes are fused into one piece (fuse_unk is always on for Unigram).
  std::vector<std::string_view> rev;
  size_t end = n, unk_end = 0;
  bool in_unk = false;
  while (end > 0) {
    const Best& b = best[end];
    size_t start = static_cast<size_t>(b.start);
    bool unk = unk_id_ && b.id == *unk_id_;
    if (unk) {
      if (!in_unk) unk_end = end;
      in_unk = true;
    } else {
      if (in_unk) rev.push_back(word.substr(end, unk_end - end));
      in_unk = false;
      rev.push_back(word.substr(start, end - start));
    }
    end = start;
  }
  if (in_unk) rev.push_back(word.substr(0, unk_end));
  out.assign(rev.rbegin(), rev.rend());
}

void Unigram::tokenize(std::string_view word, std::vector<int>& out) const {
  if (word.empty()) return;
  bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t before = out.size();
  std::vector<std::string_view> pieces;
  segment(word, pieces);
  // tokenizers' Unigram::tokenize: a piece is looked up by its text (a fused unk run may even
  // spell a real token), then byte fallback (all bytes must exist), then unk.
  for (auto piece : pieces) {
    if (auto it = vocab_.find(piece); it != vocab_.end()) {
      out.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      std::vector<int> bytes;
      for (unsigned char b : piece) {
        auto it = vocab_.find(byte_token(b));
        if (it == vocab_.end()) break;
        bytes.push_back(it->second);
      }
      if (bytes.size() == piece.size()) {
        out.insert(out.end(), bytes.begin(), bytes.end());
        continue;
      }
    }
    if (!unk_id_) fail("tokenizer", "Unigram model met an unknown piece but has no unk_id");
    out.push_back(*unk_id_);
  }
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int>(out.begin() + before, out.end()));
  }
}

}  // namespace mlxgp::tok
