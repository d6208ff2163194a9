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

void AddedTokenMatcher::add(const AddedToken& t, std::string pattern) {
  if (pattern.empty()) return;
  unsigned char first = static_cast<unsigned char>(pattern[0]);
  starts_[first] = true;
  auto& v = by_first_byte_[first];
  std::erase_if(v, [&](const Entry& o) { return o.pattern == pattern; });
  v.push_back({std::move(pattern), t.id, t.single_word, t.lstrip, t.rstrip});
  std::stable_sort(v.begin(), v.end(), [](const Entry& a, const Entry& b) { return a.pattern.size() > b.pattern.size(); });
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  if (by_first_byte_.empty()) {
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
    for (const Entry& t : by_first_byte_.at(static_cast<unsigned char>(text[pos])))
      if (text.substr(pos, t.pattern.size()) == t.pattern) {
        hit = &t;
        break;
      }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + hit->pattern.size();
    pos = stop;
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
