#include "tokenizer/bpe.h"

#include <queue>

#include "mlxgp/error.h"
#include "tokenizer/utf8.h"

namespace mlxgp::tok {

namespace {

uint64_t pair_key(int a, int b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Symbol {
  int id;
  int prev;
  int next;
};

struct Candidate {
  int rank;
  int pos;  // index of the left symbol
  int left, right, merged;
  // std::priority_queue pops the largest: lowest rank first, then leftmost (tokenizers' Merge order).
  bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

std::string byte_token(unsigned char b) {
  static const char* hex = "0123456789ABCDEF";
  return std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
}

Bpe::Bpe(Vocab vocab, const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions opts)
    : vocab_(std::move(vocab)), opts_(opts) {
  merges_.reserve(merges.size() * 2);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    auto& [a, b] = merges[rank];
    auto ia = vocab_.find(a), ib = vocab_.find(b), im = vocab_.find(a + b);
    if (ia == vocab_.end() || ib == vocab_.end() || im == vocab_.end())
      fail("tokenizer",
           "BPE merge " + std::to_string(rank) + " ('" + a + "' '" + b + "') uses a token missing from the vocabulary");
    // A repeated pair keeps its last rank: tokenizers collects the merges into a map in order.
    merges_.insert_or_assign(pair_key(ia->second, ib->second), std::make_pair(static_cast<int>(rank), im->second));
  }
  byte_ids_.fill(-1);
  if (opts_.byte_fallback)
    for (int b = 0; b < 256; ++b)
      if (auto it = vocab_.find(byte_token(static_cast<unsigned char>(b))); it != vocab_.end())
        byte_ids_[b] = it->second;
}

void Bpe::tokenize(std::string_view word, std::vector<int>& out) const {
  if (word.empty()) return;
  if (opts_.ignore_merges || (opts_.whole_newline_runs && word.find_first_not_of('\n') == std::string_view::npos)) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t before = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int>(out.begin() + before, out.end()));
  }
}

void Bpe::merge_word(std::string_view word, std::vector<int>& out) const {
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  auto push = [&](int id) {
    syms.push_back({id, static_cast<int>(syms.size()) - 1, static_cast<int>(syms.size()) + 1});
  };
  // The initial symbols, as tokenizers' BPE::merge_word builds them: a character in the
  // vocabulary, else its byte tokens (byte_fallback, only if all exist), else unk. A pending unk
  // is only flushed by the next known character, so with fuse_unk it also absorbs unknowns that
  // come after byte-fallback bytes (the reference's order, kept as is).
  int pending_unk = -1;
  size_t i = 0;
  while (i < word.size()) {
    size_t start = i;
    i = std::min(word.size(), i + utf8_len(static_cast<unsigned char>(word[i])));
    auto it = vocab_.find(word.substr(start, i - start));
    if (it != vocab_.end()) {
      if (pending_unk >= 0) push(pending_unk);
      pending_unk = -1;
      push(it->second);
      continue;
    }
    if (opts_.byte_fallback) {
      bool all = true;
      for (size_t k = start; k < i; ++k) all = all && byte_ids_[static_cast<unsigned char>(word[k])] >= 0;
      if (all) {
        for (size_t k = start; k < i; ++k) push(byte_ids_[static_cast<unsigned char>(word[k])]);
        continue;
      }
    }
    if (opts_.unk_id) {
      // With no unk token tokenizers drops the character, and so do we.
      if (pending_unk >= 0 && !opts_.fuse_unk) push(pending_unk);
      pending_unk = *opts_.unk_id;
    }
  }
  if (pending_unk >= 0) push(pending_unk);
  if (syms.empty()) return;
  syms.back().next = -1;

  std::priority_queue<Candidate> heap;
  auto consider = [&](int pos) {
    int nx = syms[pos].next;
    if (nx < 0) return;
    auto it = merges_.find(pair_key(syms[pos].id, syms[nx].id));
    if (it != merges_.end()) heap.push({it->second.first, pos, syms[pos].id, syms[nx].id, it->second.second});
  };
  for (int p = 0; p + 1 < static_cast<int>(syms.size()); ++p) consider(p);

  while (!heap.empty()) {
    Candidate c = heap.top();
    heap.pop();
    Symbol& left = syms[c.pos];
    // Skip candidates made stale by earlier merges.
    if (left.id != c.left || left.next < 0 || syms[left.next].id != c.right) continue;
    int right = left.next;
    left.id = c.merged;
    left.next = syms[right].next;
    if (left.next >= 0) syms[left.next].prev = c.pos;
    syms[right].id = -1;  // dead
    if (left.prev >= 0) consider(left.prev);
    consider(c.pos);
  }
  for (int p = 0; p >= 0; p = syms[p].next) out.push_back(syms[p].id);
}

}  // namespace mlxgp::tok
