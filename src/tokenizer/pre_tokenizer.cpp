#include "tokenizer/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include "mlxgp/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"

namespace mlxgp::tok {

namespace {

using json = nlohmann::json;

// GPT-2's pattern, which tokenizers' ByteLevel uses when use_regex is true.
const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// Splits every piece at the matches of `re` (tokenizers' SplitDelimiterBehavior semantics).
void split_pieces(const Regex& re, Behavior behavior, bool invert, std::vector<std::string>& pieces) {
  std::vector<std::string> out;
  out.reserve(pieces.size() * 2);
  std::vector<std::pair<size_t, size_t>> matches;
  struct Span {
    size_t s, e;
    bool match;
  };
  std::vector<Span> spans;
  for (const std::string& p : pieces) {
    matches.clear();
    re.find_all(p, matches);
    // The piece as alternating (range, is_match) spans covering it entirely.
    spans.clear();
    size_t at = 0;
    for (auto [s, e] : matches) {
      if (s > at) spans.push_back({at, s, invert});
      spans.push_back({s, e, !invert});
      at = e;
    }
    if (at < p.size()) spans.push_back({at, p.size(), invert});

    size_t first_new = out.size();
    for (size_t k = 0; k < spans.size(); ++k) {
      const Span& sp = spans[k];
      bool prev_match = k > 0 && spans[k - 1].match;
      bool has_prev = out.size() > first_new;
      std::string_view text(p.data() + sp.s, sp.e - sp.s);
      switch (behavior) {
        case Behavior::Removed:
          if (!sp.match) out.emplace_back(text);
          break;
        case Behavior::Isolated:
          out.emplace_back(text);
          break;
        case Behavior::MergedWithPrevious:  // a match joins a preceding non-match
          if (sp.match && !prev_match && has_prev) out.back() += text;
          else out.emplace_back(text);
          break;
        case Behavior::MergedWithNext:  // a match joins a following non-match
          if (prev_match && !sp.match && has_prev) out.back() += text;
          else out.emplace_back(text);
          break;
        case Behavior::Contiguous:  // runs of matches become one piece
          if (k > 0 && sp.match == prev_match && has_prev) out.back() += text;
          else out.emplace_back(text);
          break;
      }
    }
  }
  std::erase_if(out, [](const std::string& s) { return s.empty(); });
  pieces = std::move(out);
}

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) re_ = std::make_unique<Regex>(kGpt2Pattern, "ByteLevel pre-tokenizer");
  }
  void apply(std::vector<std::string>& pieces) const override {
    if (add_prefix_space_)
      for (auto& p : pieces)
        if (!p.empty() && p[0] != ' ') p.insert(p.begin(), ' ');
    if (re_) split_pieces(*re_, Behavior::Isolated, false, pieces);
    const auto& table = ByteLevelTable::get();
    std::string mapped;
    for (auto& p : pieces) {
      mapped.clear();
      table.encode(p, mapped);
      p.swap(mapped);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> re_;
};

class Split : public PreTokenizer {
 public:
  Split(const std::string& pattern, bool literal, Behavior behavior, bool invert)
      : re_(pattern, "Split pre-tokenizer", literal), behavior_(behavior), invert_(invert) {}
  void apply(std::vector<std::string>& pieces) const override { split_pieces(re_, behavior_, invert_, pieces); }

 private:
  Regex re_;
  Behavior behavior_;
  bool invert_;
};

class Digits : public PreTokenizer {
 public:
  // tokenizers tests char::is_numeric, i.e. the Unicode N categories.
  explicit Digits(bool individual) : re_(individual ? R"(\p{N})" : R"(\p{N}+)", "Digits pre-tokenizer") {}
  void apply(std::vector<std::string>& pieces) const override { split_pieces(re_, Behavior::Isolated, false, pieces); }

 private:
  Regex re_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> items) : items_(std::move(items)) {}
  void apply(std::vector<std::string>& pieces) const override {
    for (auto& it : items_) it->apply(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> items_;
};

Behavior parse_behavior(const json& j) {
  std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  fail("tokenizer", "unsupported Split pre-tokenizer behavior '" + (j.is_string() ? b : j.dump()) + "'");
}

bool get_bool(const json& j, const char* key, bool def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_boolean()) fail("tokenizer", std::string("pre-tokenizer field '") + key + "' must be a boolean");
  return j[key].get<bool>();
}

}  // namespace

std::unique_ptr<PreTokenizer> make_byte_level(bool add_prefix_space, bool use_regex) {
  return std::make_unique<ByteLevel>(add_prefix_space, use_regex);
}

std::unique_ptr<PreTokenizer> make_split_then_byte_level(const std::string& regex) {
  std::vector<std::unique_ptr<PreTokenizer>> items;
  items.push_back(std::make_unique<Split>(regex, false, Behavior::Isolated, false));
  items.push_back(std::make_unique<ByteLevel>(false, false));
  return std::make_unique<Sequence>(std::move(items));
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail("tokenizer", "pre_tokenizer must be an object with a string 'type'");
  std::string type = j["type"].get<std::string>();
  if (type == "ByteLevel") return make_byte_level(get_bool(j, "add_prefix_space", true), get_bool(j, "use_regex", true));
  if (type == "Digits") return std::make_unique<Digits>(get_bool(j, "individual_digits", false));
  if (type == "Split") {
    const json& pat = j.value("pattern", json());
    bool literal;
    std::string p;
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
      literal = false;
      p = pat["Regex"].get<std::string>();
    } else if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
      literal = true;
      p = pat["String"].get<std::string>();
    } else {
      fail("tokenizer", "Split pre-tokenizer needs a pattern {\"Regex\": ...} or {\"String\": ...}");
    }
    return std::make_unique<Split>(p, literal, parse_behavior(j.value("behavior", json())), get_bool(j, "invert", false));
  }
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
      fail("tokenizer", "Sequence pre-tokenizer needs a 'pretokenizers' array");
    std::vector<std::unique_ptr<PreTokenizer>> items;
    for (const auto& item : j["pretokenizers"]) {
      auto p = make_pre_tokenizer(item);
      if (p) items.push_back(std::move(p));
    }
    return std::make_unique<Sequence>(std::move(items));
  }
  fail("tokenizer", "unsupported pre-tokenizer '" + type + "'");
}

}  // namespace mlxgp::tok
