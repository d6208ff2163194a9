// Unicode normalization forms NFC/NFD/NFKC/NFKD (decomposition, canonical ordering, canonical
// composition; UAX #15), as tokenizers' normalizers apply them, and full lowercase mapping.
// Tables come from scripts/gen_nfc_tables.py and scripts/gen_unicode_tables.py.
#include <algorithm>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "tokenizer/impl.h"
#include "tokenizer/utf8.h"

namespace mlxgp::tok {

namespace {

#include "tokenizer/nfc_tables.inc"
#include "tokenizer/unicode_tables.inc"

template <size_t N>
const uint32_t* find_row(const uint32_t (&rows)[N][3], char32_t c) {
  auto it =
      std::lower_bound(std::begin(rows), std::end(rows), c, [](const uint32_t(&r)[3], char32_t v) { return r[0] < v; });
  return it != std::end(rows) && (*it)[0] == c ? *it : nullptr;
}

// Hangul syllables compose and decompose algorithmically (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint32_t ccc(char32_t c) {
  if (c < 0x300) return 0;
  auto it = std::upper_bound(std::begin(kCccRanges), std::end(kCccRanges), c,
                             [](char32_t v, const uint32_t(&r)[3]) { return v < r[0]; });
  if (it == std::begin(kCccRanges)) return 0;
  --it;
  return c <= (*it)[1] ? (*it)[2] : 0;
}

void decompose(char32_t c, std::vector<char32_t>& out, bool compat) {
  if (c >= kSBase && c < kSBase + kSCount) {
    char32_t s = c - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  auto it = std::lower_bound(std::begin(kDecompositions), std::end(kDecompositions), c,
                             [](const uint32_t(&r)[3], char32_t v) { return r[0] < v; });
  if (it == std::end(kDecompositions) || (*it)[0] != c) {
    const uint32_t* row = compat ? find_row(kCompatDecompositions, c) : nullptr;
    if (!row) {
      out.push_back(c);
      return;
    }
    for (uint32_t k = 0; k < row[2]; ++k) decompose(kCompatChars[row[1] + k], out, true);
    return;
  }
  decompose((*it)[1], out, compat);
  if ((*it)[2]) decompose((*it)[2], out, compat);
}

char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  static const std::unordered_map<uint64_t, char32_t> table = [] {
    std::unordered_map<uint64_t, char32_t> m;
    for (auto& r : kCompositions) m[(uint64_t{r[0]} << 32) | r[1]] = r[2];
    return m;
  }();
  auto it = table.find((uint64_t{a} << 32) | b);
  return it == table.end() ? 0 : it->second;
}

}  // namespace

void normalize_unicode(std::string_view in, std::string& out, bool compat, bool compose_after) {
  // Quick check: text below U+0300 is already NFC; ASCII is fixed under every form.
  unsigned char limit = compose_after && !compat ? 0xCC : 0x80;  // lead bytes of U+0300 / U+0080
  bool simple = true;
  for (unsigned char c : in)
    if (c >= limit) {
      simple = false;
      break;
    }
  if (simple) {
    out.append(in);
    return;
  }
  std::vector<char32_t> d;
  d.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) decompose(next_code_point(in, i), d, compat);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t k = 0; k < d.size();) {
    if (ccc(d[k]) == 0) {
      ++k;
      continue;
    }
    size_t e = k;
    while (e < d.size() && ccc(d[e]) != 0) ++e;
    std::stable_sort(d.begin() + k, d.begin() + e, [](char32_t a, char32_t b) { return ccc(a) < ccc(b); });
    k = e;
  }
  // Canonical composition (UAX #15 reference algorithm).
  if (compose_after && !d.empty()) {
    size_t starter = 0, len = 1;
    uint32_t last = ccc(d[0]);
    if (last != 0) last = 256;  // no starter yet: nothing may compose
    for (size_t k = 1; k < d.size(); ++k) {
      char32_t ch = d[k];
      uint32_t cc = ccc(ch);
      char32_t comp = last == 256 ? 0 : compose(d[starter], ch);
      if (comp && (last < cc || last == 0)) {
        d[starter] = comp;
        continue;
      }
      if (cc == 0) starter = len;
      last = cc;
      d[len++] = ch;
    }
    d.resize(len);
  }
  for (char32_t c : d) append_utf8(out, c);
}

void nfc(std::string_view in, std::string& out) { normalize_unicode(in, out, false, true); }

void lowercase(std::string_view in, std::string& out) {
  size_t i = 0;
  while (i < in.size()) {
    unsigned char b = static_cast<unsigned char>(in[i]);
    if (b < 0x80) {
      out += static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b);
      ++i;
      continue;
    }
    char32_t c = next_code_point(in, i);
    if (const uint32_t* row = find_row(kLowercase, c)) {
      for (uint32_t k = 0; k < row[2]; ++k) append_utf8(out, kLowercaseChars[row[1] + k]);
    } else {
      append_utf8(out, c);
    }
  }
}

}  // namespace mlxgp::tok
