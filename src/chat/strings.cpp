// Python str semantics over UTF-8: whitespace is Python's str.isspace() set, and positions count
// code points where Python would.
#include "chat/strings.h"

#include <algorithm>

#include "chat/builtins.h"
#include "chat/value.h"

namespace mlxgp::chat {

bool is_py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

namespace {
std::string encode(const std::vector<uint32_t>& cps, size_t b, size_t e) {
  std::string out;
  for (size_t k = b; k < e; ++k) append_utf8(out, cps[k]);
  return out;
}
}  // namespace

std::string py_strip(const std::string& s, const std::string* chars, int side) {
  auto cps = decode_utf8(s);
  std::vector<uint32_t> set;
  if (chars) set = decode_utf8(*chars);
  auto strip_me = [&](uint32_t cp) {
    return chars ? std::find(set.begin(), set.end(), cp) != set.end() : is_py_space(cp);
  };
  size_t b = 0, e = cps.size();
  if (side & 1)
    while (b < e && strip_me(cps[b])) ++b;
  if (side & 2)
    while (e > b && strip_me(cps[e - 1])) --e;
  return encode(cps, b, e);
}

std::vector<std::string> py_split(const std::string& s, const std::string& sep, int64_t maxsplit, bool from_right) {
  if (sep.empty()) eval_fail("empty separator");
  std::vector<std::string> out;
  if (!from_right) {
    size_t at = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      size_t hit = s.find(sep, at);
      if (hit == std::string::npos) break;
      out.push_back(s.substr(at, hit - at));
      at = hit + sep.size();
    }
    out.push_back(s.substr(at));
    return out;
  }
  size_t end = s.size();
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    if (end < sep.size()) break;
    size_t hit = s.rfind(sep, end - sep.size());
    if (hit == std::string::npos) break;
    out.push_back(s.substr(hit + sep.size(), end - hit - sep.size()));
    end = hit;
  }
  out.push_back(s.substr(0, end));
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> py_split_ws(const std::string& s, int64_t maxsplit, bool from_right) {
  auto cps = decode_utf8(s);
  if (from_right) std::reverse(cps.begin(), cps.end());
  std::vector<std::string> out;
  size_t k = 0, n = cps.size();
  while (true) {
    while (k < n && is_py_space(cps[k])) ++k;
    if (k == n) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      // The rest keeps its far end's whitespace, as CPython's split_whitespace.
      std::vector<uint32_t> rest(cps.begin() + k, cps.end());
      if (from_right) std::reverse(rest.begin(), rest.end());
      out.push_back(encode(rest, 0, rest.size()));
      break;
    }
    size_t b = k;
    while (k < n && !is_py_space(cps[k])) ++k;
    std::vector<uint32_t> word(cps.begin() + b, cps.begin() + k);
    if (from_right) std::reverse(word.begin(), word.end());
    out.push_back(encode(word, 0, word.size()));
  }
  if (from_right) std::reverse(out.begin(), out.end());
  return out;
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& repl, int64_t count) {
  std::string out;
  if (old.empty()) {  // Python inserts repl between every character (and at both ends)
    auto cps = decode_utf8(s);
    int64_t done = 0;
    for (size_t k = 0; k <= cps.size(); ++k) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
      }
      if (k < cps.size()) append_utf8(out, cps[k]);
    }
    return out;
  }
  size_t at = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t hit = s.find(old, at);
    if (hit == std::string::npos) break;
    out += s.substr(at, hit - at) + repl;
    at = hit + old.size();
    ++done;
  }
  return out + s.substr(at);
}

}  // namespace mlxgp::chat
