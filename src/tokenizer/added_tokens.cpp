#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace mlxgp::tok {

namespace {

// Unicode White_Space, which Rust's char::is_whitespace tests (lstrip/rstrip).
bool is_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Rust regex's Unicode \w, which tokenizers' single_word check uses:
// Alphabetic, marks, decimal digits, connector punctuation and the two joiners.
bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  static const Regex word(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])", "single_word check");
  std::string s;
  append_utf8(s, c);
  std::vector<std::pair<size_t, size_t>> m;
  word.find_all(s, m);
  return !m.empty();
}

char32_t last_char(std::string_view s) {
  size_t i = s.size();
  while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
  if (i > 0) --i;
  return next_code_point(s, i);
}

}  // namespace

int AddedTokenMatcher::child(int node, unsigned char b) const {
  const auto& next = nodes_[node].next;
  auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(b, 0));
  return it != next.end() && it->first == b ? it->second : -1;
}

void AddedTokenMatcher::add(const AddedToken& t, const std::string& pattern) {
  if (pattern.empty()) return;
  starts_[static_cast<unsigned char>(pattern[0])] = true;
  int node = 0;
  for (unsigned char b : pattern) {
    int c = child(node, b);
    if (c < 0) {
      c = static_cast<int>(nodes_.size());
      nodes_.emplace_back();
      auto& next = nodes_[node].next;
      next.insert(std::lower_bound(next.begin(), next.end(), std::make_pair(b, 0)), {b, c});
    }
    node = c;
  }
  Entry e{pattern.size(), t.id, t.single_word, t.lstrip, t.rstrip, t.special};
  if (nodes_[node].entry >= 0) {
    entries_[nodes_[node].entry] = e;
  } else {
    nodes_[node].entry = static_cast<int>(entries_.size());
    entries_.push_back(e);
  }
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out, bool skip_special) const {
  if (entries_.empty()) {
    if (!text.empty()) out.push_back({text, -1});
    return;
  }
  // Mirrors tokenizers' find_matches over an aho-corasick LeftmostLongest iterator: the search
  // resumes after each raw match (also a rejected one), while `done` tracks the end of the last
  // emitted split, which rstrip may push further.
  size_t done = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!starts_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    const Entry* hit = nullptr;
    for (size_t k = pos, node = 0; k < text.size();) {
      int c = child(static_cast<int>(node), static_cast<unsigned char>(text[k++]));
      if (c < 0) break;
      node = static_cast<size_t>(c);
      if (nodes_[node].entry >= 0) hit = &entries_[nodes_[node].entry];
    }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + hit->length;
    pos = stop;
    if (skip_special && hit->special) continue;  // the search still resumes after it, as in tokenizers
    if (hit->single_word) {
      bool left_ok = start == 0 || !is_word_char(last_char(text.substr(0, start)));
      size_t j = stop;
      bool right_ok = stop == text.size() || !is_word_char(next_code_point(text, j));
      if (!left_ok || !right_ok) continue;
    }
    if (hit->lstrip) {
      size_t k = start;
      while (k > 0) {
        size_t b = k - 1;
        while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
        size_t j = b;
        if (!is_whitespace(next_code_point(text, j))) break;
        k = b;
      }
      start = std::max(k, done);  // spaces an earlier split already took stay there
    }
    if (hit->rstrip) {
      while (stop < text.size()) {
        size_t j = stop;
        if (!is_whitespace(next_code_point(text, j))) break;
        stop = j;
      }
    }
    if (done < start) out.push_back({text.substr(done, start - done), -1});
    out.push_back({text.substr(start, stop > start ? stop - start : 0), hit->id});
    done = stop;
  }
  if (done < text.size()) out.push_back({text.substr(done), -1});
}

}  // namespace mlxgp::tok
