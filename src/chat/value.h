// The values a chat template computes with: Python's None/bool/int/float/str/list/dict plus Jinja's
// Undefined, namespace objects and callables (macros, builtins). Printing and comparison follow
// Python, since Jinja renders with str() and compares with Python operators.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlxgp::chat {

struct Value;
using List = std::vector<Value>;
using Map = std::vector<std::pair<Value, Value>>;  // insertion-ordered, like a Python dict
struct Kwargs;
using Builtin = std::function<Value(std::vector<Value>&, Kwargs&)>;

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Map, Namespace, Callable };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                // String; for Undefined: the name that was missing
  std::shared_ptr<List> list;   // List
  std::shared_ptr<Map> map;     // Map and Namespace (shared: namespace attributes are mutable)
  std::shared_ptr<Builtin> fn;  // Callable
  bool tuple = false;           // a List that Python would hold as a tuple (prints with parentheses)

  static Value undefined(std::string name = "") {
    Value v;
    v.s = std::move(name);
    return v;
  }
  static Value none() {
    Value v;
    v.kind = Kind::None;
    return v;
  }
  static Value boolean(bool x) {
    Value v;
    v.kind = Kind::Bool;
    v.b = x;
    return v;
  }
  static Value integer(int64_t x) {
    Value v;
    v.kind = Kind::Int;
    v.i = x;
    return v;
  }
  static Value number(double x) {
    Value v;
    v.kind = Kind::Float;
    v.f = x;
    return v;
  }
  static Value string(std::string x) {
    Value v;
    v.kind = Kind::String;
    v.s = std::move(x);
    return v;
  }
  static Value make_list(List xs = {}) {
    Value v;
    v.kind = Kind::List;
    v.list = std::make_shared<List>(std::move(xs));
    return v;
  }
  static Value make_tuple(List xs) {
    Value v = make_list(std::move(xs));
    v.tuple = true;
    return v;
  }
  static Value make_map(Map m = {}, bool ns = false) {
    Value v;
    v.kind = ns ? Kind::Namespace : Kind::Map;
    v.map = std::make_shared<Map>(std::move(m));
    return v;
  }
  static Value callable(Builtin f) {
    Value v;
    v.kind = Kind::Callable;
    v.fn = std::make_shared<Builtin>(std::move(f));
    return v;
  }

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_none() const { return kind == Kind::None; }
  bool is_string() const { return kind == Kind::String; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  bool is_mapping() const { return kind == Kind::Map || kind == Kind::Namespace; }
  // A pointer to the value stored under `key` in a map/namespace, or nullptr.
  const Value* find(const std::string& key) const;
  void set(const Value& key, Value v);  // map/namespace only
};

struct Kwargs {
  std::vector<std::pair<std::string, Value>> items;
  // Removes and returns the keyword argument `name`, if given.
  bool take(const std::string& name, Value& out);
};

// Python type name ("str", "int", "NoneType", ...) for error messages.
std::string type_name(const Value& v);
bool truthy(const Value& v);
// str(v) in Python; Undefined prints as "".
std::string to_str(const Value& v);
// repr(v) in Python (used inside str() of lists and dicts).
std::string repr(const Value& v);
// json.dumps(v, ensure_ascii=..., indent=indent, separators=..., sort_keys=...): transformers'
// tojson filter. indent < 0 means None.
std::string to_json(const Value& v, int indent, const std::string& item_sep, const std::string& key_sep, bool sort_keys,
                    bool ensure_ascii = false);
// Python ==, and the ordering used by <, >, sort (throws [chat_template] on unorderable types).
bool equals(const Value& a, const Value& b);
int compare(const Value& a, const Value& b);
std::string float_repr(double x);

Value from_json(const nlohmann::ordered_json& j);

// UTF-8 helpers: strings index and slice by code point, as Python str does.
std::vector<uint32_t> decode_utf8(const std::string& s);
void append_utf8(std::string& out, uint32_t cp);

}  // namespace mlxgp::chat
