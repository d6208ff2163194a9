// Jinja's ordering and aggregate filters: sort, dictsort, min, max, sum, round (semantics of
// jinja2.filters 3.1: do_sort, do_dictsort, do_min / do_max, sync_do_sum, do_round).
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "chat/case.h"
#include "chat/filter_args.h"

namespace mlxgp::chat {

namespace {

// jinja2's ignore_case: strings compare lowercased unless case_sensitive.
Value fold_case(Value v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) v.s = py_lower(v.s);
  return v;
}

// make_multi_attrgetter: "a.b,c" reads one key per comma-separated path; none reads the item itself.
Value sort_key(const Value& item, const Value& attribute, bool case_sensitive) {
  if (attribute.is_none()) return fold_case(item, case_sensitive);
  List keys;
  const std::string paths = to_str(attribute);
  size_t at = 0;
  while (true) {
    const size_t comma = paths.find(',', at);
    keys.push_back(fold_case(attribute_of(item, paths.substr(at, comma - at)), case_sensitive));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return Value::make_list(std::move(keys));
}

// Python's sorted(..., key, reverse): stable, and equal keys keep their order when reversed too.
List sorted_by(List xs, const std::vector<Value>& keys, bool reverse) {
  std::vector<size_t> order(xs.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return reverse ? compare(keys[b], keys[a]) < 0 : compare(keys[a], keys[b]) < 0;
  });
  List out;
  for (size_t k : order) out.push_back(xs[k]);
  return out;
}

int64_t int_of(const Value& v) { return v.kind == Value::Kind::Bool ? v.b : v.i; }

// do_round: Python's round(value, precision) for "common" (correctly rounded, ties to even: the
// shortest exact decimal printf gives), else math.ceil / math.floor(value * 10**p) / 10**p.
Value round_value(const Value& v, const Value& precision, const Value& method) {
  const std::string how = to_str(method);
  if (how != "common" && how != "ceil" && how != "floor") eval_fail("method must be 'common', 'ceil' or 'floor'");
  if (!v.is_number()) eval_fail("type " + type_name(v) + " doesn't define __round__ method");
  if (precision.kind != Value::Kind::Int && precision.kind != Value::Kind::Bool)
    eval_fail("'" + type_name(precision) + "' object cannot be interpreted as an integer");
  const int64_t p = int_of(precision);
  if (p < 0) eval_fail("round with a negative precision is not supported");
  if (how == "common") {
    if (v.kind != Value::Kind::Float) return Value::integer(int_of(v));  // int.__round__ keeps the int
    char buf[700];  // the longest double (309 digits) with 340 decimals
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(std::min<int64_t>(p, 340)), v.f);
    return Value::number(std::strtod(buf, nullptr));
  }
  // 10**p as a double is exact up to 10^22; beyond it Python divides exact integers, which this does not.
  if (p > 22) eval_fail("round with method '" + how + "' and a precision above 22 is not supported");
  if (v.kind != Value::Kind::Float) return Value::number(static_cast<double>(int_of(v)));
  if (!std::isfinite(v.f)) eval_fail("cannot convert float " + float_repr(v.f) + " to integer");
  const double scale = std::pow(10.0, static_cast<double>(p));
  // + 0.0: math.ceil / floor return an int, so Python's -0.0 and ceil(-0.4) come back as 0.0.
  const double r = (how == "ceil" ? std::ceil(v.f * scale) : std::floor(v.f * scale)) + 0.0;
  return Value::number(r / scale);
}

}  // namespace

bool apply_ordering_filter(const std::string& name, const Value& v, std::vector<Value>& args, Kwargs& kw, Value& out) {
  if (name == "sort") {
    const Value reverse = arg_or(args, kw, 0, "reverse", Value::boolean(false));
    const Value case_sensitive = arg_or(args, kw, 1, "case_sensitive", Value::boolean(false));
    const Value attribute = arg_or(args, kw, 2, "attribute", Value::none());
    check(name, args, 3, kw);
    List xs = iterate(v), keys;
    for (auto& x : xs) keys.push_back(sort_key(x, attribute, truthy(case_sensitive)));
    out = Value::make_list(sorted_by(std::move(xs), keys, truthy(reverse)));
    return true;
  }
  if (name == "dictsort") {
    const Value case_sensitive = arg_or(args, kw, 0, "case_sensitive", Value::boolean(false));
    const Value by = arg_or(args, kw, 1, "by", Value::string("key"));
    const Value reverse = arg_or(args, kw, 2, "reverse", Value::boolean(false));
    check(name, args, 3, kw);
    if (!by.is_string() || (by.s != "key" && by.s != "value"))
      eval_fail("You can only sort by either \"key\" or \"value\"");
    if (!v.is_mapping()) eval_fail("'" + type_name(v) + "' object has no attribute 'items'");
    List items, keys;
    for (auto& [k, x] : *v.map) {
      items.push_back(Value::make_tuple({k, x}));
      keys.push_back(fold_case(by.s == "key" ? k : x, truthy(case_sensitive)));
    }
    out = Value::make_list(sorted_by(std::move(items), keys, truthy(reverse)));
    return true;
  }
  if (name == "min" || name == "max") {
    const Value case_sensitive = arg_or(args, kw, 0, "case_sensitive", Value::boolean(false));
    const Value attribute = arg_or(args, kw, 1, "attribute", Value::none());
    check(name, args, 2, kw);
    const List xs = iterate(v);
    if (xs.empty()) {
      out = Value::undefined("No aggregated item, sequence was empty.");
      return true;
    }
    // Python's min / max keep the first of equal items.
    auto key = [&](const Value& x) {
      return fold_case(attribute.is_none() ? x : attribute_of(x, to_str(attribute)), truthy(case_sensitive));
    };
    size_t best = 0;
    Value best_key = key(xs[0]);
    for (size_t k = 1; k < xs.size(); ++k) {
      Value kk = key(xs[k]);
      if (name == "max" ? compare(best_key, kk) < 0 : compare(kk, best_key) < 0) {
        best = k;
        best_key = kk;
      }
    }
    out = xs[best];
    return true;
  }
  if (name == "sum") {
    const Value attribute = arg_or(args, kw, 0, "attribute", Value::none());
    Value total = arg_or(args, kw, 1, "start", Value::integer(0));
    check(name, args, 2, kw);
    if (total.is_string()) eval_fail("sum() can't sum strings [use ''.join(seq) instead]");
    for (auto& x : iterate(v))
      total = binary_op("+", total, attribute.is_none() ? x : attribute_of(x, to_str(attribute)));
    out = total;
    return true;
  }
  if (name == "round") {
    const Value precision = arg_or(args, kw, 0, "precision", Value::integer(0));
    const Value method = arg_or(args, kw, 1, "method", Value::string("common"));
    check(name, args, 2, kw);
    out = round_value(v, precision, method);
    return true;
  }
  return false;
}

}  // namespace mlxgp::chat
