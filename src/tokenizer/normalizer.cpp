#include "tokenizer/normalizer.h"

#include <vector>

#include <nlohmann/json.hpp>

#include "mlxgp/error.h"
#include "tokenizer/impl.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace mlxgp::tok {

namespace {

using json = nlohmann::json;

// Rust's char::is_whitespace (Unicode White_Space), which tokenizers' Strip uses.
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

class Unicode : public Normalizer {
 public:
  Unicode(bool compat, bool compose) : compat_(compat), compose_(compose) {}
  void apply(std::string& text) const override {
    std::string out;
    out.reserve(text.size());
    normalize_unicode(text, out, compat_, compose_);
    text.swap(out);
  }

 private:
  bool compat_, compose_;
};

class Lowercase : public Normalizer {
 public:
  void apply(std::string& text) const override {
    std::string out;
    out.reserve(text.size());
    lowercase(text, out);
    text.swap(out);
  }
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void apply(std::string& text) const override {
    size_t b = 0, e = text.size();
    if (left_) {
      while (b < e) {
        size_t i = b;
        if (!is_space(next_code_point(text, i))) break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        size_t s = e - 1;
        while (s > b && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
        size_t i = s;
        if (!is_space(next_code_point(text, i))) break;
        e = s;
      }
    }
    text = text.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string s) : s_(std::move(s)) {}
  void apply(std::string& text) const override {
    if (!text.empty()) text.insert(0, s_);  // tokenizers leaves empty text alone
  }

 private:
  std::string s_;
};

class Replace : public Normalizer {
 public:
  Replace(const Pattern& p, std::string content)
      : re_(p.text, "Replace normalizer", p.literal), content_(std::move(content)) {}
  void apply(std::string& text) const override { replace_all(re_, content_, text); }

 private:
  Regex re_;
  std::string content_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> items) : items_(std::move(items)) {}
  void apply(std::string& text) const override {
    for (const auto& n : items_) n->apply(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> items_;
};

bool get_bool(const json& j, const char* key, bool def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_boolean()) fail("tokenizer", std::string("normalizer field '") + key + "' must be a boolean");
  return j[key].get<bool>();
}

std::string get_string(const json& j, const char* key, const char* where) {
  if (!j.contains(key) || !j[key].is_string()) fail("tokenizer", std::string(where) + " needs a string '" + key + "'");
  return j[key].get<std::string>();
}

}  // namespace

Pattern parse_pattern(const json& j, const char* where) {
  if (j.is_object() && j.contains("String") && j["String"].is_string()) return {j["String"].get<std::string>(), true};
  if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) return {j["Regex"].get<std::string>(), false};
  fail("tokenizer", std::string(where) + " needs a pattern {\"String\": ...} or {\"Regex\": ...}");
}

void replace_all(const Regex& re, std::string_view content, std::string& text) {
  std::vector<std::pair<size_t, size_t>> m;
  re.find_all(text, m);
  if (m.empty()) return;
  std::string out;
  out.reserve(text.size() + m.size() * content.size());
  size_t at = 0;
  for (auto [s, e] : m) {
    out.append(text, at, s - at);
    out.append(content);
    at = e;
  }
  out.append(text, at, std::string::npos);
  text.swap(out);
}

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail("tokenizer", "normalizer must be an object with a string 'type'");
  std::string type = j["type"].get<std::string>();
  if (type == "NFC") return std::make_unique<Unicode>(false, true);
  if (type == "NFD") return std::make_unique<Unicode>(false, false);
  if (type == "NFKC") return std::make_unique<Unicode>(true, true);
  if (type == "NFKD") return std::make_unique<Unicode>(true, false);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Strip")
    return std::make_unique<Strip>(get_bool(j, "strip_left", true), get_bool(j, "strip_right", true));
  if (type == "Prepend") return std::make_unique<Prepend>(get_string(j, "prepend", "Prepend normalizer"));
  if (type == "Replace")
    return std::make_unique<Replace>(parse_pattern(j.value("pattern", json()), "Replace normalizer"),
                                     get_string(j, "content", "Replace normalizer"));
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array())
      fail("tokenizer", "Sequence normalizer needs a 'normalizers' array");
    std::vector<std::unique_ptr<Normalizer>> items;
    for (const auto& item : j["normalizers"])
      if (auto n = make_normalizer(item)) items.push_back(std::move(n));
    return std::make_unique<Sequence>(std::move(items));
  }
  fail("tokenizer", "unsupported normalizer '" + type + "'");
}

}  // namespace mlxgp::tok
