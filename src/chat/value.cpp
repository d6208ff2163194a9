// Python semantics for template values: str(), repr(), json.dumps(), ==, ordering, truthiness.
#include "chat/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "mlxgp/error.h"

namespace mlxgp::chat {

const Value* Value::find(const std::string& key) const {
  if (!map) return nullptr;
  for (auto& [k, v] : *map)
    if (k.kind == Kind::String && k.s == key) return &v;
  return nullptr;
}

void Value::set(const Value& key, Value v) {
  for (auto& [k, old] : *map)
    if (equals(k, key)) {
      old = std::move(v);
      return;
    }
  map->emplace_back(key, std::move(v));
}

bool Kwargs::take(const std::string& name, Value& out) {
  for (auto it = items.begin(); it != items.end(); ++it)
    if (it->first == name) {
      out = std::move(it->second);
      items.erase(it);
      return true;
    }
  return false;
}

std::string type_name(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
      return "Undefined";
    case Value::Kind::None:
      return "NoneType";
    case Value::Kind::Bool:
      return "bool";
    case Value::Kind::Int:
      return "int";
    case Value::Kind::Float:
      return "float";
    case Value::Kind::String:
      return "str";
    case Value::Kind::List:
      return "list";
    case Value::Kind::Map:
      return "dict";
    case Value::Kind::Namespace:
      return "Namespace";
    case Value::Kind::Callable:
      return "function";
  }
  return "?";
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None:
      return false;
    case Value::Kind::Bool:
      return v.b;
    case Value::Kind::Int:
      return v.i != 0;
    case Value::Kind::Float:
      return v.f != 0;
    case Value::Kind::String:
      return !v.s.empty();
    case Value::Kind::List:
      return !v.list->empty();
    case Value::Kind::Map:
      return !v.map->empty();
    default:
      return true;
  }
}

// Python's float repr: the shortest round-trip digits, in fixed notation for 1e-4 <= |x| < 1e16.
std::string float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // d.ddde[+-]XX
  size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  int exp = std::stoi(sci.substr(e + 1));
  bool neg = mant[0] == '-';
  if (neg) mant = mant.substr(1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out;
  if (exp < -4 || exp >= 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  } else if (exp < 0) {
    out = "0." + std::string(-exp - 1, '0') + digits;
  } else {
    if (digits.size() <= static_cast<size_t>(exp) + 1) {
      out = digits + std::string(exp + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
    }
  }
  return neg ? "-" + out : out;
}

std::string repr(const Value& v) {
  if (v.kind == Value::Kind::Undefined) return "Undefined";  // jinja2.Undefined.__repr__
  if (v.kind != Value::Kind::String) return to_str(v);
  // Python picks single quotes unless the string holds ' and no ".
  bool has_sq = v.s.find('\'') != std::string::npos, has_dq = v.s.find('"') != std::string::npos;
  char q = has_sq && !has_dq ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : v.s) {
    if (c == q || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else out += static_cast<char>(c);
  }
  return out + q;
}

std::string to_str(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
      return "";
    case Value::Kind::None:
      return "None";
    case Value::Kind::Bool:
      return v.b ? "True" : "False";
    case Value::Kind::Int:
      return std::to_string(v.i);
    case Value::Kind::Float:
      return float_repr(v.f);
    case Value::Kind::String:
      return v.s;
    case Value::Kind::List: {
      std::string out = v.tuple ? "(" : "[";
      for (size_t k = 0; k < v.list->size(); ++k) out += (k ? ", " : "") + repr((*v.list)[k]);
      if (v.tuple && v.list->size() == 1) out += ",";
      return out + (v.tuple ? ")" : "]");
    }
    case Value::Kind::Map: {
      std::string out = "{";
      bool first = true;
      for (auto& [k, x] : *v.map) {
        out += (first ? "" : ", ") + repr(k) + ": " + repr(x);
        first = false;
      }
      return out + "}";
    }
    case Value::Kind::Namespace:
      return "<Namespace>";
    case Value::Kind::Callable:
      return "<function>";
  }
  return "";
}

namespace {

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          out += b;
        } else out += static_cast<char>(c);
    }
  }
  out += '"';
}

void dump(std::string& out, const Value& v, int indent, int depth, const std::string& isep, const std::string& ksep,
          bool sort_keys) {
  auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent) * d, ' ');
  };
  switch (v.kind) {
    case Value::Kind::None:
      out += "null";
      return;
    case Value::Kind::Bool:
      out += v.b ? "true" : "false";
      return;
    case Value::Kind::Int:
      out += std::to_string(v.i);
      return;
    case Value::Kind::Float:
      if (std::isnan(v.f)) out += "NaN";
      else if (std::isinf(v.f)) out += v.f > 0 ? "Infinity" : "-Infinity";
      else out += float_repr(v.f);
      return;
    case Value::Kind::String:
      json_string(out, v.s);
      return;
    case Value::Kind::List: {
      if (v.list->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += isep;
        newline(depth + 1);
        dump(out, (*v.list)[k], indent, depth + 1, isep, ksep, sort_keys);
      }
      newline(depth);
      out += ']';
      return;
    }
    case Value::Kind::Map: {
      if (v.map->empty()) {
        out += "{}";
        return;
      }
      Map items = *v.map;
      for (auto& [k, x] : items)
        if (!k.is_string() && !k.is_number() && !k.is_none())
          fail("chat_template", "tojson: keys must be str, int, float, bool or None, not " + type_name(k));
      if (sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto& a, auto& b) { return compare(a.first, b.first) < 0; });
      out += '{';
      bool first = true;
      for (auto& [k, x] : items) {
        if (!first) out += isep;
        first = false;
        newline(depth + 1);
        // json.dumps turns non-string keys into their JSON spelling.
        if (k.is_string()) json_string(out, k.s);
        else {
          std::string ks;
          dump(ks, k, -1, 0, isep, ksep, false);
          json_string(out, ks);
        }
        out += ksep;
        dump(out, x, indent, depth + 1, isep, ksep, sort_keys);
      }
      newline(depth);
      out += '}';
      return;
    }
    default:
      fail("chat_template", "tojson: object of type " + type_name(v) + " is not JSON serializable");
  }
}

}  // namespace

std::string to_json(const Value& v, int indent, const std::string& item_sep, const std::string& key_sep, bool sort_keys,
                    bool ensure_ascii) {
  std::string out;
  dump(out, v, indent, 0, item_sep, key_sep, sort_keys);
  if (!ensure_ascii) return out;
  // Non-ASCII text only occurs inside JSON strings, so escaping it afterwards equals
  // json.dumps(ensure_ascii=True): \uXXXX, with surrogate pairs above the BMP.
  std::string ascii;
  for (uint32_t cp : decode_utf8(out)) {
    char b[16];
    if (cp < 0x80) {
      ascii += static_cast<char>(cp);
      continue;
    }
    if (cp >= 0x10000) {
      uint32_t x = cp - 0x10000;
      std::snprintf(b, sizeof b, "\\u%04x\\u%04x", 0xd800 + (x >> 10), 0xdc00 + (x & 0x3ff));
    } else {
      std::snprintf(b, sizeof b, "\\u%04x", cp);
    }
    ascii += b;
  }
  return ascii;
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind == Value::Kind::Float || b.kind == Value::Kind::Float) {
      double x = a.kind == Value::Kind::Float ? a.f : static_cast<double>(a.kind == Value::Kind::Bool ? a.b : a.i);
      double y = b.kind == Value::Kind::Float ? b.f : static_cast<double>(b.kind == Value::Kind::Bool ? b.b : b.i);
      return x == y;
    }
    int64_t x = a.kind == Value::Kind::Bool ? a.b : a.i, y = b.kind == Value::Kind::Bool ? b.b : b.i;
    return x == y;
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None:
      return true;
    case Value::Kind::String:
      return a.s == b.s;
    case Value::Kind::List:
      if (a.tuple != b.tuple || a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equals((*a.list)[k], (*b.list)[k])) return false;
      return true;
    case Value::Kind::Map:
      if (a.map->size() != b.map->size()) return false;
      for (auto& [k, x] : *a.map) {
        bool found = false;
        for (auto& [k2, y] : *b.map)
          if (equals(k, k2)) {
            if (!equals(x, y)) return false;
            found = true;
            break;
          }
        if (!found) return false;
      }
      return true;
    default:
      return a.map == b.map && a.fn == b.fn;
  }
}

int compare(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    auto num = [](const Value& v) {
      return v.kind == Value::Kind::Float ? v.f : static_cast<double>(v.kind == Value::Kind::Bool ? v.b : v.i);
    };
    double x = num(a), y = num(b);
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string())
    return a.s < b.s ? -1 : (a.s > b.s ? 1 : 0);  // UTF-8 byte order = code point order
  if (a.kind == Value::Kind::List && b.kind == Value::Kind::List) {
    for (size_t k = 0; k < a.list->size() && k < b.list->size(); ++k)
      if (int c = compare((*a.list)[k], (*b.list)[k])) return c;
    return a.list->size() < b.list->size() ? -1 : (a.list->size() > b.list->size() ? 1 : 0);
  }
  fail("chat_template", "'<' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
}

Value from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned:
      return Value::integer(static_cast<int64_t>(j.get<uint64_t>()));
    case nlohmann::ordered_json::value_t::number_float:
      return Value::number(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List xs;
      for (auto& x : j) xs.push_back(from_json(x));
      return Value::make_list(std::move(xs));
    }
    case nlohmann::ordered_json::value_t::object: {
      Map m;
      for (auto it = j.begin(); it != j.end(); ++it) m.emplace_back(Value::string(it.key()), from_json(it.value()));
      return Value::make_map(std::move(m));
    }
    default:
      fail("chat_template", "unsupported JSON value in the context");
  }
}

std::vector<uint32_t> decode_utf8(const std::string& s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t k = 0; k < s.size();) {
    unsigned char c = s[k];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || k + n > s.size()) fail("chat_template", "string is not valid UTF-8");
    uint32_t cp = n == 1 ? c : c & (0x7f >> n);
    for (int m = 1; m < n; ++m) {
      unsigned char d = s[k + m];
      if ((d & 0xc0) != 0x80) fail("chat_template", "string is not valid UTF-8");
      cp = (cp << 6) | (d & 0x3f);
    }
    out.push_back(cp);
    k += n;
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) out += static_cast<char>(cp);
  else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

}  // namespace mlxgp::chat
