// Python's binary operators on template values (Jinja evaluates operators with Python semantics).
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "chat/builtins.h"

namespace mlxgp::chat {

namespace {

constexpr size_t kMaxRepeat = size_t(64) << 20;  // bytes/items from `*` repetition

bool is_int(const Value& v) { return v.kind == Value::Kind::Int || v.kind == Value::Kind::Bool; }
int64_t as_int(const Value& v) { return v.kind == Value::Kind::Int ? v.i : v.b; }
double as_float(const Value& v) { return v.kind == Value::Kind::Float ? v.f : static_cast<double>(as_int(v)); }

[[noreturn]] void type_error(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined() && !a.s.empty()) eval_fail(a.s);
  if (b.is_undefined() && !b.s.empty()) eval_fail(b.s);
  eval_fail("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
}

// Python integers are unbounded; ours are int64, so overflow is an error instead of a wrong value.
Value checked(bool overflowed, int64_t r) {
  if (overflowed) eval_fail("integer overflow");
  return Value::integer(r);
}

Value repeat(const Value& seq, int64_t n) {
  if (n < 0) n = 0;
  size_t unit = seq.is_string() ? seq.s.size() : seq.list->size();
  if (unit && static_cast<size_t>(n) > kMaxRepeat / unit) eval_fail("repetition result is too large");
  if (seq.is_string()) {
    std::string out;
    for (int64_t k = 0; k < n; ++k) out += seq.s;
    return Value::string(out);
  }
  List out;
  for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq.list->begin(), seq.list->end());
  return Value::make_list(std::move(out));
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind) {
    case Value::Kind::Undefined:
      return false;
    case Value::Kind::String:
      if (!item.is_string()) eval_fail("'in <string>' requires string as left operand, not " + type_name(item));
      return container.s.find(item.s) != std::string::npos;
    case Value::Kind::List:
      for (auto& x : *container.list)
        if (equals(x, item)) return true;
      return false;
    case Value::Kind::Map:
    case Value::Kind::Namespace:
      for (auto& [k, x] : *container.map)
        if (equals(k, item)) return true;
      return false;
    default:
      eval_fail("argument of type '" + type_name(container) + "' is not iterable");
  }
}

}  // namespace

Value binary_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value::string(to_str(a) + to_str(b));
  if (op == "==") return Value::boolean(equals(a, b));
  if (op == "!=") return Value::boolean(!equals(a, b));
  if (op == "<" || op == ">" || op == "<=" || op == ">=") {
    if (a.is_undefined() || b.is_undefined()) type_error(op, a, b);
    int c = compare(a, b);
    return Value::boolean(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
  }
  if (op == "in") return Value::boolean(contains(b, a));
  if (op == "not in") return Value::boolean(!contains(b, a));
  bool nums = a.is_number() && b.is_number(), ints = is_int(a) && is_int(b);
  int64_t r = 0;
  if (op == "+") {
    if (ints) {
      bool overflowed =
          __builtin_add_overflow(as_int(a), as_int(b), &r);  // sets r first: argument order is unspecified
      return checked(overflowed, r);
    }
    if (nums) return Value::number(as_float(a) + as_float(b));
    if (a.is_string() && b.is_string()) return Value::string(a.s + b.s);
    if (a.kind == Value::Kind::List && b.kind == Value::Kind::List) {
      List xs = *a.list;
      xs.insert(xs.end(), b.list->begin(), b.list->end());
      return Value::make_list(std::move(xs));
    }
    type_error(op, a, b);
  }
  if (op == "-") {
    if (ints) {
      bool overflowed =
          __builtin_sub_overflow(as_int(a), as_int(b), &r);  // sets r first: argument order is unspecified
      return checked(overflowed, r);
    }
    if (nums) return Value::number(as_float(a) - as_float(b));
    type_error(op, a, b);
  }
  if (op == "*") {
    if (ints) {
      bool overflowed =
          __builtin_mul_overflow(as_int(a), as_int(b), &r);  // sets r first: argument order is unspecified
      return checked(overflowed, r);
    }
    if (nums) return Value::number(as_float(a) * as_float(b));
    if ((a.is_string() || a.kind == Value::Kind::List) && is_int(b)) return repeat(a, as_int(b));
    if ((b.is_string() || b.kind == Value::Kind::List) && is_int(a)) return repeat(b, as_int(a));
    type_error(op, a, b);
  }
  if (op == "/" || op == "//" || op == "%") {
    if (!nums) {
      if (op == "%" && a.is_string()) eval_fail("unsupported: printf-style string formatting with %");
      type_error(op, a, b);
    }
    if (as_float(b) == 0) eval_fail(op == "%" ? "integer modulo by zero" : "division by zero");
    if (op == "/") return Value::number(as_float(a) / as_float(b));
    if (ints) {  // Python floors toward negative infinity
      int64_t x = as_int(a), y = as_int(b);
      if (x == INT64_MIN && y == -1) eval_fail("integer overflow");
      int64_t q = x / y;
      r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) {
        --q;
        r += y;
      }
      return Value::integer(op == "//" ? q : r);
    }
    double x = as_float(a), y = as_float(b);
    double q = std::floor(x / y);
    return Value::number(op == "//" ? q : x - q * y);
  }
  if (op == "**") {
    if (ints && as_int(b) >= 0) {
      int64_t base = as_int(a), e = as_int(b), p = 1;
      for (int64_t k = 0; k < e; ++k) {
        if (base > 1 || base < -1) {
          if (std::abs(p) > INT64_MAX / std::abs(base)) eval_fail("integer overflow in **");
        } else if (k > 1) {  // 0, 1 and -1 cycle: finish in closed form
          p = (base == -1 && e % 2) ? -1 : (base == 0 ? 0 : 1);
          break;
        }
        p *= base;
      }
      return Value::integer(p);
    }
    if (nums) return Value::number(std::pow(as_float(a), as_float(b)));
    type_error(op, a, b);
  }
  eval_fail("unsupported operator '" + op + "'");
}

}  // namespace mlxgp::chat
