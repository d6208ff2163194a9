// Jinja's built-in filters and tests used by chat templates (semantics of jinja2.filters/tests),
// with transformers' tojson (json.dumps, ensure_ascii=False, no HTML escaping).
#include <algorithm>
#include <cmath>
#include <set>

#include "chat/builtins.h"
#include "chat/filter_args.h"
#include "chat/case.h"
#include "chat/strings.h"

namespace mlxgp::chat {

bool known_filter(const std::string& name) {
  static const std::set<std::string> names = {
      "tojson", "trim", "length",  "count", "upper",    "lower", "title",      "capitalize", "default",
      "d",      "join", "replace", "list",  "first",    "last",  "reverse",    "items",      "string",
      "safe",   "e",    "escape",  "int",   "float",    "abs",   "selectattr", "rejectattr", "select",
      "reject", "map",  "unique",  "sort",  "dictsort", "min",   "max",        "sum",        "round"};
  return names.count(name) > 0;
}

bool known_test(const std::string& name) {
  static const std::set<std::string> names = {
      "defined",     "undefined", "none",     "string",   "number",   "integer", "float", "boolean", "true",
      "false",       "mapping",   "sequence", "iterable", "callable", "lower",   "upper", "odd",     "even",
      "divisibleby", "equalto",   "eq",       "==",       "sameas",   "ne",      "!=",    "lt",      "<",
      "le",          "<=",        "gt",       ">",        "ge",       ">=",      "in"};
  return names.count(name) > 0;
}

bool apply_test(const std::string& name, const Value& v, std::vector<Value>& args) {
  auto need = [&](size_t n) {
    if (args.size() != n) eval_fail("test '" + name + "' takes " + std::to_string(n) + " argument(s)");
  };
  if (name == "defined") return need(0), !v.is_undefined();
  if (name == "undefined") return need(0), v.is_undefined();
  if (name == "none") return need(0), v.is_none();
  if (name == "string") return need(0), v.is_string();
  if (name == "number") return need(0), v.is_number();
  if (name == "integer") return need(0), v.kind == Value::Kind::Int;
  if (name == "float") return need(0), v.kind == Value::Kind::Float;
  if (name == "boolean") return need(0), v.kind == Value::Kind::Bool;
  if (name == "true") return need(0), v.kind == Value::Kind::Bool && v.b;
  if (name == "false") return need(0), v.kind == Value::Kind::Bool && !v.b;
  if (name == "mapping") return need(0), v.kind == Value::Kind::Map;
  // jinja2's Undefined has a length and iterates as empty, so both tests hold for it (Gemma 3's template walks a
  // message without content as an empty part list).
  if (name == "sequence" || name == "iterable")
    return need(0), v.kind == Value::Kind::List || v.is_string() || v.kind == Value::Kind::Map || v.is_undefined();
  if (name == "callable") return need(0), v.kind == Value::Kind::Callable;
  if (name == "lower") return need(0), py_islower(to_str(v));
  if (name == "upper") return need(0), py_isupper(to_str(v));
  if (name == "odd" || name == "even") {
    need(0);
    if (v.kind != Value::Kind::Int) eval_fail("test '" + name + "' needs an integer");
    return (((v.i % 2) + 2) % 2 == 1) == (name == "odd");
  }
  if (name == "divisibleby") {
    need(1);
    if (v.kind != Value::Kind::Int || args[0].kind != Value::Kind::Int || args[0].i == 0)
      eval_fail("test 'divisibleby' needs integers");
    return v.i % args[0].i == 0;
  }
  if (name == "equalto" || name == "eq" || name == "==" || name == "sameas") return need(1), equals(v, args[0]);
  if (name == "ne" || name == "!=") return need(1), !equals(v, args[0]);
  if (name == "lt" || name == "<") return need(1), compare(v, args[0]) < 0;
  if (name == "le" || name == "<=") return need(1), compare(v, args[0]) <= 0;
  if (name == "gt" || name == ">") return need(1), compare(v, args[0]) > 0;
  if (name == "ge" || name == ">=") return need(1), compare(v, args[0]) >= 0;
  if (name == "in") {
    need(1);
    for (auto& x : iterate(args[0]))
      if (equals(x, v)) return true;
    if (args[0].is_string() && v.is_string()) return args[0].s.find(v.s) != std::string::npos;
    return false;
  }
  eval_fail("unsupported test '" + name + "'");
}

Value apply_filter(const std::string& name, const Value& v, std::vector<Value>& args, Kwargs& kw) {
  if (name == "tojson") {
    Value indent = arg_or(args, kw, 1, "indent", Value::none());
    // transformers' signature: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    Value seps = arg_or(args, kw, 2, "separators", Value::none());
    Value sort_keys = arg_or(args, kw, 3, "sort_keys", Value::boolean(false));
    Value ensure_ascii = arg_or(args, kw, 0, "ensure_ascii", Value::boolean(false));
    check("tojson", args, 4, kw);
    int ind = indent.is_none()                  ? -1
              : indent.kind == Value::Kind::Int ? static_cast<int>(std::clamp<int64_t>(indent.i, 0, 64))
                                                : -2;
    if (ind == -2) eval_fail("tojson indent must be an integer");
    std::string isep = ind >= 0 ? "," : ", ", ksep = ": ";
    if (!seps.is_none()) {
      if (seps.kind != Value::Kind::List || seps.list->size() != 2 || !(*seps.list)[0].is_string() ||
          !(*seps.list)[1].is_string())
        eval_fail("tojson separators must be a pair of strings");
      isep = (*seps.list)[0].s;
      ksep = (*seps.list)[1].s;
    }
    if (v.is_undefined()) eval_fail("Object of type Undefined is not JSON serializable");
    return Value::string(to_json(v, ind, isep, ksep, truthy(sort_keys), truthy(ensure_ascii)));
  }
  if (name == "trim") {
    Value chars = arg_or(args, kw, 0, "chars", Value::none());
    check("trim", args, 1, kw);
    std::string s = need_str(name, v);
    return Value::string(chars.is_none() ? py_strip(s, nullptr, 3) : py_strip(s, &chars.s, 3));
  }
  if (name == "length" || name == "count") {
    check(name, args, 0, kw);
    switch (v.kind) {
      case Value::Kind::Undefined:
        return Value::integer(0);
      case Value::Kind::String:
        return Value::integer(static_cast<int64_t>(decode_utf8(v.s).size()));
      case Value::Kind::List:
        return Value::integer(static_cast<int64_t>(v.list->size()));
      case Value::Kind::Map:
        return Value::integer(static_cast<int64_t>(v.map->size()));
      default:
        eval_fail("object of type '" + type_name(v) + "' has no len()");
    }
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    check(name, args, 0, kw);
    std::string s = need_str(name, v);
    if (name == "upper") return Value::string(py_upper(s));
    if (name == "lower") return Value::string(py_lower(s));
    if (name == "title") return Value::string(jinja_title(s));
    return Value::string(py_capitalize(s));
  }
  if (name == "default" || name == "d") {
    Value dflt = arg_or(args, kw, 0, "default_value", Value::string(""));
    Value boolean = arg_or(args, kw, 1, "boolean", Value::boolean(false));
    check(name, args, 2, kw);
    return (v.is_undefined() || (truthy(boolean) && !truthy(v))) ? dflt : v;
  }
  if (name == "join") {
    Value sep = arg_or(args, kw, 0, "d", Value::string(""));
    Value attr = arg_or(args, kw, 1, "attribute", Value::none());
    check(name, args, 2, kw);
    std::string out;
    bool first = true;
    for (auto& x : iterate(v)) {
      if (!first) out += to_str(sep);
      out += to_str(attr.is_none() ? x : attribute_of(x, to_str(attr)));
      first = false;
    }
    return Value::string(out);
  }
  if (name == "replace") {
    Value count = arg_or(args, kw, 2, "count", Value::none());
    check(name, args, 3, kw);
    if (args.size() < 2) eval_fail("replace filter needs old and new strings");
    return Value::string(py_replace(to_str(v), to_str(args[0]), to_str(args[1]), count.is_none() ? -1 : count.i));
  }
  if (name == "list") return check(name, args, 0, kw), Value::make_list(iterate(v));
  if (name == "first" || name == "last") {
    check(name, args, 0, kw);
    auto xs = iterate(v);
    if (xs.empty()) return Value::undefined("No " + name + " item, sequence was empty.");
    return name == "first" ? xs.front() : xs.back();
  }
  if (name == "reverse") {
    check(name, args, 0, kw);
    if (v.is_string()) return slice(v, Value::none(), Value::none(), Value::integer(-1));
    auto xs = iterate(v);
    std::reverse(xs.begin(), xs.end());
    return Value::make_list(std::move(xs));
  }
  if (name == "items") {
    check(name, args, 0, kw);
    if (v.is_undefined()) return Value::make_list();
    if (!v.is_mapping()) eval_fail("items filter needs a mapping");
    List out;
    for (auto& [k, x] : *v.map) out.push_back(Value::make_tuple({k, x}));
    return Value::make_list(std::move(out));
  }
  if (name == "string") return check(name, args, 0, kw), Value::string(to_str(v));
  if (name == "safe" || name == "e" || name == "escape") {
    check(name, args, 0, kw);
    if (name == "safe") return v;
    std::string out;
    for (char c : to_str(v)) {
      if (c == '&') out += "&amp;";
      else if (c == '<') out += "&lt;";
      else if (c == '>') out += "&gt;";
      else if (c == '"') out += "&#34;";
      else if (c == '\'') out += "&#39;";
      else out += c;
    }
    return Value::string(out);
  }
  if (name == "int" || name == "float") {
    Value dflt = arg_or(args, kw, 0, "default", name == "int" ? Value::integer(0) : Value::number(0));
    check(name, args, name == "int" ? 2 : 1, kw);
    if (v.kind == Value::Kind::Int || v.kind == Value::Kind::Bool)
      return name == "int" ? Value::integer(v.kind == Value::Kind::Int ? v.i : v.b)
                           : Value::number(v.kind == Value::Kind::Int ? v.i : v.b);
    if (v.kind == Value::Kind::Float)
      return name == "int" ? (std::isfinite(v.f) ? Value::integer(static_cast<int64_t>(v.f)) : dflt) : v;
    if (v.is_string()) {
      std::string s = py_strip(v.s, nullptr, 3);
      try {
        size_t used = 0;
        if (name == "int") {
          int64_t x = std::stoll(s, &used);
          if (used == s.size()) return Value::integer(x);
        }
        double x = std::stod(s, &used);
        if (used == s.size()) return name == "int" ? Value::integer(static_cast<int64_t>(x)) : Value::number(x);
      } catch (const std::exception&) {
      }
    }
    return dflt;
  }
  if (name == "abs") {
    check(name, args, 0, kw);
    if (v.kind == Value::Kind::Int) return Value::integer(v.i < 0 ? -v.i : v.i);
    if (v.kind == Value::Kind::Float) return Value::number(std::fabs(v.f));
    eval_fail("bad operand type for abs(): '" + type_name(v) + "'");
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    bool attr_mode = name == "selectattr" || name == "rejectattr";
    bool keep_if = name == "selectattr" || name == "select";
    if (!kw.items.empty()) eval_fail(name + " got an unexpected keyword argument");
    if (attr_mode && args.empty()) eval_fail(name + " needs an attribute name");
    size_t t = attr_mode ? 1 : 0;
    std::string test = t < args.size() ? to_str(args[t]) : "";
    std::vector<Value> targs(args.begin() + std::min(args.size(), t + 1), args.end());
    List out;
    for (auto& x : iterate(v)) {
      Value item = attr_mode ? attribute_of(x, to_str(args[0])) : x;
      bool ok = test.empty() ? truthy(item) : apply_test(test, item, targs);
      if (ok == keep_if) out.push_back(x);
    }
    return Value::make_list(std::move(out));
  }
  if (name == "map") {
    Value attr;
    bool by_attr = kw.take("attribute", attr);
    Value dflt;
    bool has_default = kw.take("default", dflt);
    List out;
    if (by_attr) {
      check(name, args, 0, kw);
      for (auto& x : iterate(v)) {
        Value y = attribute_of(x, to_str(attr));
        out.push_back(y.is_undefined() && has_default ? dflt : y);
      }
    } else {
      if (args.empty()) eval_fail("map needs a filter name or attribute=");
      std::string f = to_str(args[0]);
      std::vector<Value> fargs(args.begin() + 1, args.end());
      for (auto& x : iterate(v)) {
        std::vector<Value> a = fargs;
        Kwargs k = kw;
        out.push_back(apply_filter(f, x, a, k));
      }
    }
    return Value::make_list(std::move(out));
  }
  if (name == "unique") {  // jinja2: keys compared lowercased unless case_sensitive, optionally by attribute
    Value case_sensitive = arg_or(args, kw, 0, "case_sensitive", Value::boolean(false));
    Value attr = arg_or(args, kw, 1, "attribute", Value::none());
    check(name, args, 2, kw);
    List out, seen;
    for (auto& x : iterate(v)) {
      Value key = attr.is_none() ? x : attribute_of(x, to_str(attr));
      if (key.kind == Value::Kind::List || key.kind == Value::Kind::Map)
        eval_fail("unhashable type: '" + type_name(key) + "'");
      if (key.is_string() && !truthy(case_sensitive)) key = Value::string(py_lower(key.s));
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& y) { return equals(key, y); })) {
        seen.push_back(key);
        out.push_back(x);
      }
    }
    return Value::make_list(std::move(out));
  }
  if (Value out; apply_ordering_filter(name, v, args, kw, out)) return out;
  eval_fail("unsupported filter '" + name + "'");
}

}  // namespace mlxgp::chat
