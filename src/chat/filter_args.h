// Argument handling shared by the filter files (filters.cpp, filters_ordering.cpp): Jinja filters take
// their options by position or by keyword, and refuse extra ones (TypeError in Python).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "chat/builtins.h"
#include "chat/strings.h"

namespace mlxgp::chat {

inline Value arg_or(std::vector<Value>& args, Kwargs& kw, size_t pos, const std::string& name, Value dflt) {
  Value v;
  if (kw.take(name, v)) return v;
  return pos < args.size() ? args[pos] : dflt;
}

inline void check(const std::string& what, const std::vector<Value>& args, size_t max_args, const Kwargs& kw) {
  if (args.size() > max_args) eval_fail("too many arguments to " + what);
  if (!kw.items.empty()) eval_fail(what + " got an unexpected keyword argument '" + kw.items[0].first + "'");
}

inline std::string need_str(const std::string& what, const Value& v) {
  // Jinja's string filters call str() on their input (soft_str); undefined prints as "".
  return to_str(v);
}

// selectattr/rejectattr/map(attribute=...) read attributes with dots naming nested lookups.
inline Value attribute_of(const Value& item, const std::string& path) {
  Value v = item;
  size_t at = 0;
  while (true) {
    size_t dot = path.find('.', at);
    std::string part = path.substr(at, dot == std::string::npos ? std::string::npos : dot - at);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    v = get_item(v, digits ? Value::integer(std::stoll(part)) : Value::string(part));
    if (dot == std::string::npos) return v;
    at = dot + 1;
  }
}

// sort, dictsort, min, max, sum and round (filters_ordering.cpp): sets `out` and returns true for those
// names, false for any other.
bool apply_ordering_filter(const std::string& name, const Value& v, std::vector<Value>& args, Kwargs& kw, Value& out);

}  // namespace mlxgp::chat
