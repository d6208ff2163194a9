// Attribute/item lookup, Python str/dict/list methods, slicing and the template globals.
#include "chat/builtins.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <optional>

#include "chat/case.h"
#include "chat/strings.h"

namespace mlxgp::chat {

void eval_fail(const std::string& message) { throw EvalError{message, 0}; }

namespace {

constexpr int64_t kMaxItems = 1 << 20;  // bound on range() and repetition, so a template cannot exhaust memory

void arity(const std::string& name, const std::vector<Value>& args, size_t lo, size_t hi) {
  if (args.size() < lo || args.size() > hi)
    eval_fail(name + "() takes " + std::to_string(lo) + (hi > lo ? " to " + std::to_string(hi) : "") + " arguments (" +
              std::to_string(args.size()) + " given)");
}
void no_kwargs(const std::string& name, const Kwargs& kw) {
  if (!kw.items.empty()) eval_fail(name + "() got an unexpected keyword argument '" + kw.items[0].first + "'");
}
const std::string& str_arg(const std::string& fn, const Value& v) {
  if (!v.is_string()) eval_fail(fn + "() argument must be str, not " + type_name(v));
  return v.s;
}
int64_t int_arg(const std::string& fn, const Value& v) {
  if (v.kind == Value::Kind::Int) return v.i;
  if (v.kind == Value::Kind::Bool) return v.b;
  eval_fail(fn + "() argument must be int, not " + type_name(v));
}

Value string_method(const std::string& self, const std::string& name) {
  auto bind = [&](auto f) {
    return Value::callable([self, name, f](std::vector<Value>& a, Kwargs& kw) -> Value {
      no_kwargs(name, kw);
      return f(self, a);
    });
  };
  using A = std::vector<Value>;
  if (name == "startswith" || name == "endswith") {
    bool start = name == "startswith";
    return bind([start, name](const std::string& s, A& a) {
      arity(name, a, 1, 1);
      std::vector<std::string> opts;
      if (a[0].kind == Value::Kind::List)
        for (auto& x : *a[0].list) opts.push_back(str_arg(name, x));
      else opts.push_back(str_arg(name, a[0]));
      for (auto& o : opts)
        if (o.size() <= s.size() &&
            (start ? s.compare(0, o.size(), o) : s.compare(s.size() - o.size(), o.size(), o)) == 0)
          return Value::boolean(true);
      return Value::boolean(false);
    });
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    int side = name == "strip" ? 3 : name == "lstrip" ? 1 : 2;
    return bind([side, name](const std::string& s, A& a) {
      arity(name, a, 0, 1);
      if (!a.empty() && !a[0].is_none()) return Value::string(py_strip(s, &str_arg(name, a[0]), side));
      return Value::string(py_strip(s, nullptr, side));
    });
  }
  if (name == "split" || name == "rsplit") {
    return bind([name](const std::string& s, A& a) {
      arity(name, a, 0, 2);
      int64_t maxsplit = a.size() > 1 ? int_arg(name, a[1]) : -1;
      List parts;
      for (auto& p : (a.empty() || a[0].is_none()) ? py_split_ws(s, maxsplit, name == "rsplit")
                                                   : py_split(s, str_arg(name, a[0]), maxsplit, name == "rsplit"))
        parts.push_back(Value::string(p));
      return Value::make_list(std::move(parts));
    });
  }
  if (name == "replace") {
    return bind([](const std::string& s, A& a) {
      arity("replace", a, 2, 3);
      return Value::string(py_replace(s, str_arg("replace", a[0]), str_arg("replace", a[1]),
                                      a.size() > 2 ? int_arg("replace", a[2]) : -1));
    });
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    return bind([name](const std::string& s, A& a) {
      arity(name, a, 0, 0);
      if (name == "upper") return Value::string(py_upper(s));
      if (name == "lower") return Value::string(py_lower(s));
      if (name == "title") return Value::string(py_title(s));
      return Value::string(py_capitalize(s));
    });
  }
  if (name == "find" || name == "count") {
    return bind([name](const std::string& s, A& a) {
      arity(name, a, 1, 1);
      const std::string& sub = str_arg(name, a[0]);
      if (name == "find") {
        size_t at = s.find(sub);
        return Value::integer(at == std::string::npos ? -1 : static_cast<int64_t>(decode_utf8(s.substr(0, at)).size()));
      }
      if (sub.empty()) return Value::integer(static_cast<int64_t>(decode_utf8(s).size()) + 1);
      int64_t n = 0;
      for (size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
      return Value::integer(n);
    });
  }
  if (name == "join") {
    return bind([](const std::string& s, A& a) {
      arity("join", a, 1, 1);
      std::string out;
      bool first = true;
      for (auto& x : iterate(a[0])) {
        if (!first) out += s;
        out += str_arg("join", x);
        first = false;
      }
      return Value::string(out);
    });
  }
  return Value::undefined("'str object' has no attribute '" + name + "'");
}

Value dict_method(const Value& self, const std::string& name) {
  if (name == "get")
    return Value::callable([self](std::vector<Value>& a, Kwargs& kw) {
      no_kwargs("get", kw);
      arity("get", a, 1, 2);
      for (auto& [k, v] : *self.map)
        if (equals(k, a[0])) return v;
      return a.size() > 1 ? a[1] : Value::none();
    });
  if (name == "items" || name == "keys" || name == "values")
    return Value::callable([self, name](std::vector<Value>& a, Kwargs& kw) {
      no_kwargs(name, kw);
      arity(name, a, 0, 0);
      List out;
      for (auto& [k, v] : *self.map)
        out.push_back(name == "items" ? Value::make_tuple({k, v}) : name == "keys" ? k : v);
      return Value::make_list(std::move(out));
    });
  return Value::undefined();
}

}  // namespace

Value get_attr(const Value& obj, const std::string& name) {
  switch (obj.kind) {
    case Value::Kind::Undefined:
      eval_fail(obj.s.empty() ? "cannot read attribute '" + name + "' of an undefined value" : obj.s);
    case Value::Kind::String:
      return string_method(obj.s, name);
    case Value::Kind::Namespace: {
      const Value* v = obj.find(name);
      return v ? *v : Value::undefined("'Namespace' has no attribute '" + name + "'");
    }
    case Value::Kind::Map: {
      Value m = dict_method(obj, name);
      if (!m.is_undefined()) return m;
      const Value* v = obj.find(name);
      return v ? *v : Value::undefined("'dict object' has no attribute '" + name + "'");
    }
    default:
      return Value::undefined("'" + type_name(obj) + " object' has no attribute '" + name + "'");
  }
}

Value get_item(const Value& obj, const Value& key) {
  switch (obj.kind) {
    case Value::Kind::Undefined:
      eval_fail(obj.s.empty() ? "cannot index an undefined value" : obj.s);
    case Value::Kind::List:
    case Value::Kind::String:
      if (key.kind == Value::Kind::Int || key.kind == Value::Kind::Bool) {
        int64_t i = key.kind == Value::Kind::Int ? key.i : key.b;
        if (obj.kind == Value::Kind::List) {
          int64_t n = static_cast<int64_t>(obj.list->size());
          if (i < 0) i += n;
          if (i < 0 || i >= n) return Value::undefined("list index out of range");
          return (*obj.list)[i];
        }
        auto cps = decode_utf8(obj.s);
        int64_t n = static_cast<int64_t>(cps.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undefined("string index out of range");
        std::string out;
        append_utf8(out, cps[i]);
        return Value::string(out);
      }
      break;
    case Value::Kind::Map:
    case Value::Kind::Namespace:
      for (auto& [k, v] : *obj.map)
        if (equals(k, key)) return v;
      break;
    default:
      break;
  }
  if (key.is_string()) return get_attr(obj, key.s);
  return Value::undefined("'" + type_name(obj) + " object' has no element " + repr(key));
}

Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.kind != Value::Kind::List && obj.kind != Value::Kind::String) eval_fail("cannot slice a " + type_name(obj));
  auto opt = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_undefined() || v.is_none()) return std::nullopt;
    if (v.kind == Value::Kind::Int) return v.i;
    eval_fail(std::string("slice ") + what + " must be an integer or None, not " + type_name(v));
  };
  std::vector<uint32_t> cps;
  if (obj.is_string()) cps = decode_utf8(obj.s);
  int64_t n = obj.is_string() ? static_cast<int64_t>(cps.size()) : static_cast<int64_t>(obj.list->size());
  int64_t st = opt(step, "step").value_or(1);
  if (st == 0) eval_fail("slice step cannot be zero");
  // Python's slice.indices(): clamp, with different bounds for negative steps.
  auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v < 0 ? *v + n : *v;
    if (st > 0) return std::clamp<int64_t>(x, 0, n);
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  int64_t b = clamp(opt(start, "start"), st > 0 ? 0 : n - 1), e = clamp(opt(stop, "stop"), st > 0 ? n : -1);
  std::string s;
  List xs;
  // Stepping stops before k could overflow (steps may be as large as int64 allows).
  for (int64_t k = b; st > 0 ? k < e : k > e;) {
    if (obj.is_string()) append_utf8(s, cps[k]);
    else xs.push_back((*obj.list)[k]);
    if (__builtin_add_overflow(k, st, &k)) break;
  }
  return obj.is_string() ? Value::string(s) : Value::make_list(std::move(xs));
}

Value call(const Value& fn, std::vector<Value>& args, Kwargs& kwargs) {
  if (fn.kind == Value::Kind::Undefined) eval_fail(fn.s.empty() ? "cannot call an undefined value" : fn.s);
  if (fn.kind != Value::Kind::Callable) eval_fail("'" + type_name(fn) + "' object is not callable");
  return (*fn.fn)(args, kwargs);
}

std::vector<Value> iterate(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
      return {};
    case Value::Kind::List:
      return *v.list;
    case Value::Kind::Map: {
      std::vector<Value> keys;
      for (auto& [k, x] : *v.map) keys.push_back(k);
      return keys;
    }
    case Value::Kind::String: {
      std::vector<Value> out;
      for (uint32_t cp : decode_utf8(v.s)) {
        std::string c;
        append_utf8(c, cp);
        out.push_back(Value::string(c));
      }
      return out;
    }
    default:
      eval_fail("'" + type_name(v) + "' object is not iterable");
  }
}

Value global_function(const std::string& name) {
  if (name == "raise_exception")
    return Value::callable([](std::vector<Value>& a, Kwargs& kw) -> Value {
      arity("raise_exception", a, 1, 1);
      throw RaiseError{to_str(a[0])};
    });
  if (name == "strftime_now")
    return Value::callable([](std::vector<Value>& a, Kwargs& kw) {
      arity("strftime_now", a, 1, 1);
      std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[256];
      size_t n = std::strftime(buf, sizeof buf, str_arg("strftime_now", a[0]).c_str(), &tm);
      return Value::string(std::string(buf, n));
    });
  if (name == "namespace" || name == "dict")
    return Value::callable([name](std::vector<Value>& a, Kwargs& kw) {
      Value m = Value::make_map({}, name == "namespace");
      if (a.size() > 1) eval_fail(name + "() takes at most 1 positional argument");
      if (!a.empty()) {
        if (!a[0].is_mapping()) eval_fail(name + "() argument must be a mapping");
        for (auto& [k, v] : *a[0].map) m.set(k, v);
      }
      for (auto& [k, v] : kw.items) {
        if (name == "namespace" && !k.empty() && k[0] == '_')
          eval_fail("Chat templates cannot store underscore-prefixed attributes on a namespace");
        m.set(Value::string(k), v);
      }
      return m;
    });
  if (name == "range")
    return Value::callable([](std::vector<Value>& a, Kwargs& kw) {
      no_kwargs("range", kw);
      arity("range", a, 1, 3);
      int64_t lo = a.size() > 1 ? int_arg("range", a[0]) : 0, hi = int_arg("range", a.size() > 1 ? a[1] : a[0]);
      int64_t st = a.size() > 2 ? int_arg("range", a[2]) : 1;
      if (st == 0) eval_fail("range() arg 3 must not be zero");
      List xs;
      for (int64_t k = lo; st > 0 ? k < hi : k > hi;) {
        if (static_cast<int64_t>(xs.size()) >= kMaxItems) eval_fail("range() is too large");
        xs.push_back(Value::integer(k));
        if (__builtin_add_overflow(k, st, &k)) break;
      }
      return Value::make_list(std::move(xs));
    });
  return Value::undefined();
}

}  // namespace mlxgp::chat
