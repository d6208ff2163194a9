// CPython's unicodeobject.c case functions (do_upper / do_lower / do_title / do_capitalize, isupper,
// islower) over the per-code-point table generated from Python's own str.
#include "chat/case.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "chat/strings.h"
#include "chat/value.h"

namespace mlxgp::chat {

namespace {

struct CaseRecord {
  uint8_t flags;
  int32_t upper, lower, title;
};
struct CaseRange {
  uint32_t first, last;
  uint16_t record, odd_record;
};

#include "chat/case_tables.inc"

constexpr uint8_t kLower = 1, kUpper = 2, kTitle = 4, kCased = 8, kIgnorable = 16;
constexpr uint8_t kUpperMulti = 32, kLowerMulti = 64, kTitleMulti = 128;
const CaseRecord kNone{0, 0, 0, 0};

const CaseRecord& record(uint32_t cp) {
  auto end = std::end(kCaseRanges);
  auto it =
      std::upper_bound(std::begin(kCaseRanges), end, cp, [](uint32_t c, const CaseRange& r) { return c < r.first; });
  if (it == std::begin(kCaseRanges)) return kNone;
  --it;
  if (cp > it->last) return kNone;
  return kCaseRecords[(cp - it->first) % 2 ? it->odd_record : it->record];
}

void append_mapped(std::string& out, uint32_t cp, int32_t value, bool multi) {
  if (!multi) return append_utf8(out, static_cast<uint32_t>(static_cast<int64_t>(cp) + value));
  const auto& m = kCaseMulti[value];
  for (uint16_t k = 0; k < m[1]; ++k) append_utf8(out, kCaseMultiChars[m[0] + k]);
}

void upper(std::string& out, uint32_t cp) {
  const auto& r = record(cp);
  append_mapped(out, cp, r.upper, r.flags & kUpperMulti);
}
void title(std::string& out, uint32_t cp) {
  const auto& r = record(cp);
  append_mapped(out, cp, r.title, r.flags & kTitleMulti);
}

// Lowercase of cps[i]: a capital sigma is final (ς) after a cased letter (case-ignorable ones between)
// unless a cased letter follows (CPython's handle_capital_sigma).
void lower(std::string& out, const std::vector<uint32_t>& cps, size_t i) {
  uint32_t cp = cps[i];
  if (cp == 0x3A3) {
    size_t j = i;
    while (j > 0 && (record(cps[j - 1]).flags & kIgnorable)) --j;
    bool final_sigma = j > 0 && (record(cps[j - 1]).flags & kCased);
    if (final_sigma) {
      size_t k = i + 1;
      while (k < cps.size() && (record(cps[k]).flags & kIgnorable)) ++k;
      final_sigma = k == cps.size() || !(record(cps[k]).flags & kCased);
    }
    return append_utf8(out, final_sigma ? 0x3C2 : 0x3C3);
  }
  const auto& r = record(cp);
  append_mapped(out, cp, r.lower, r.flags & kLowerMulti);
}

}  // namespace

std::string py_upper(const std::string& s) {
  std::string out;
  for (uint32_t cp : decode_utf8(s)) upper(out, cp);
  return out;
}

std::string py_lower(const std::string& s) {
  auto cps = decode_utf8(s);
  std::string out;
  for (size_t i = 0; i < cps.size(); ++i) lower(out, cps, i);
  return out;
}

std::string py_title(const std::string& s) {
  auto cps = decode_utf8(s);
  std::string out;
  bool previous_is_cased = false;
  for (size_t i = 0; i < cps.size(); ++i) {
    if (previous_is_cased) lower(out, cps, i);
    else title(out, cps[i]);
    previous_is_cased = record(cps[i]).flags & kCased;
  }
  return out;
}

std::string py_capitalize(const std::string& s) {
  auto cps = decode_utf8(s);
  std::string out;
  for (size_t i = 0; i < cps.size(); ++i) {
    if (i == 0) title(out, cps[0]);  // titlecase since Python 3.8
    else lower(out, cps, i);
  }
  return out;
}

// Python's str.isupper / islower: at least one cased character, all of them of case `want`.
static bool all_cased_as(const std::string& s, uint8_t want, uint8_t other) {
  bool cased = false;
  for (uint32_t cp : decode_utf8(s)) {
    uint8_t f = record(cp).flags;
    if (f & (other | kTitle)) return false;
    cased = cased || (f & want);
  }
  return cased;
}

bool py_isupper(const std::string& s) { return all_cased_as(s, kUpper, kLower); }

bool py_islower(const std::string& s) { return all_cased_as(s, kLower, kUpper); }

std::string jinja_title(const std::string& s) {
  // re.split(r"([-\s({\[<]+)", s), empty pieces dropped: separator runs are pieces too (unchanged by it).
  auto cps = decode_utf8(s);
  auto sep = [](uint32_t c) { return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_py_space(c); };
  std::string out;
  for (size_t b = 0; b < cps.size();) {
    size_t e = b + 1;
    while (e < cps.size() && sep(cps[e]) == sep(cps[b])) ++e;
    std::vector<uint32_t> rest(cps.begin() + b + 1, cps.begin() + e);
    upper(out, cps[b]);
    for (size_t i = 0; i < rest.size(); ++i) lower(out, rest, i);
    b = e;
  }
  return out;
}

}  // namespace mlxgp::chat
