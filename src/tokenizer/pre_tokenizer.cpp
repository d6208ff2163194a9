#include "tokenizer/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include "mlxgp/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace mlxgp::tok {

namespace {

using json = nlohmann::json;

// GPT-2's pattern, which tokenizers' ByteLevel uses when use_regex is true.
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// Splits every piece at the matches of `re` (tokenizers' SplitDelimiterBehavior semantics).
void split_pieces(const Regex& re, Behavior behavior, bool invert, std::vector<std::string>& pieces, bool& first) {
  if (pieces.empty() || pieces[0].empty()) first = false;
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
      if (k == 0 && &p == &pieces[0] && behavior == Behavior::Removed && sp.match) first = false;
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
  void apply(std::vector<std::string>& pieces, bool& first) const override {
    if (add_prefix_space_)
      for (auto& p : pieces)
        if (!p.empty() && p[0] != ' ') p.insert(p.begin(), ' ');
    if (re_) split_pieces(*re_, Behavior::Isolated, false, pieces, first);
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
  void apply(std::vector<std::string>& pieces, bool& first) const override {
    split_pieces(re_, behavior_, invert_, pieces, first);
  }

 private:
  Regex re_;
  Behavior behavior_;
  bool invert_;
};

class Digits : public PreTokenizer {
 public:
  // tokenizers tests char::is_numeric, i.e. the Unicode N categories.
  explicit Digits(bool individual) : re_(individual ? R"(\p{N})" : R"(\p{N}+)", "Digits pre-tokenizer") {}
  void apply(std::vector<std::string>& pieces, bool& first) const override {
    split_pieces(re_, Behavior::Isolated, false, pieces, first);
  }

 private:
  Regex re_;
};

// Rust regex's Unicode \w and \s (tokenizers' Whitespace uses the regex crate), spelled out
// because PCRE2's UCP classes differ slightly (marks, Nl/No, U+180E).
const char* kWordClass = R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])";
const char* kSpaceClass =
    R"([\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}])";
const char* kNotWordOrSpace =
    R"([^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}])";
// tokenizers' is_punc: ASCII punctuation or a Unicode P* category.
const char* kPunctClass = R"([\p{P}!-\/:-@\[-`{-~])";

class Metaspace : public PreTokenizer {
 public:
  enum class Scheme { Always, First, Never };
  Metaspace(std::string replacement, Scheme scheme, bool split)
      : rep_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void apply(std::vector<std::string>& pieces, bool& first) const override {
    std::vector<std::string> out;
    out.reserve(pieces.size());
    for (size_t i = 0; i < pieces.size(); ++i) {
      std::string t;
      t.reserve(pieces[i].size() + rep_.size());
      for (char c : pieces[i]) {
        if (c == ' ') t += rep_;
        else t += c;
      }
      bool at_start = i == 0 && first;
      if ((scheme_ == Scheme::Always || (scheme_ == Scheme::First && at_start)) && t.compare(0, rep_.size(), rep_) != 0)
        t.insert(0, rep_);
      if (!split_) {
        out.push_back(std::move(t));
        continue;
      }
      // split(replacement, MergedWithNext): a new piece starts at each replacement character.
      size_t at = 0;
      while (at < t.size()) {
        size_t next = t.find(rep_, at + (t.compare(at, rep_.size(), rep_) == 0 ? rep_.size() : 0));
        if (next == std::string::npos) next = t.size();
        out.push_back(t.substr(at, next - at));
        at = next;
      }
    }
    if (!pieces.empty() && pieces[0].empty()) first = false;
    std::erase_if(out, [](const std::string& s) { return s.empty(); });
    pieces = std::move(out);
  }

 private:
  std::string rep_;
  Scheme scheme_;
  bool split_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> items) : items_(std::move(items)) {}
  void apply(std::vector<std::string>& pieces, bool& first) const override {
    for (auto& it : items_) it->apply(pieces, first);
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
  if (type == "ByteLevel")
    return make_byte_level(get_bool(j, "add_prefix_space", true), get_bool(j, "use_regex", true));
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
    return std::make_unique<Split>(p, literal, parse_behavior(j.value("behavior", json())),
                                   get_bool(j, "invert", false));
  }
  if (type == "Metaspace") {
    std::string rep =
        j.contains("replacement") && j["replacement"].is_string() ? j["replacement"].get<std::string>() : "â";
    size_t n = 0;
    if (rep.empty() || (next_code_point(rep, n), n != rep.size()))
      fail("tokenizer", "Metaspace pre-tokenizer replacement must be one character");
    std::string scheme = j.contains("prepend_scheme") && j["prepend_scheme"].is_string()
                             ? j["prepend_scheme"].get<std::string>()
                             : (get_bool(j, "add_prefix_space", true) ? "always" : "never");
    Metaspace::Scheme sc;
    if (scheme == "always") sc = Metaspace::Scheme::Always;
    else if (scheme == "first") sc = Metaspace::Scheme::First;
    else if (scheme == "never") sc = Metaspace::Scheme::Never;
    else fail("tokenizer", "unsupported Metaspace prepend_scheme '" + scheme + "'");
    return std::make_unique<Metaspace>(rep, sc, get_bool(j, "split", true));
  }
  if (type == "Whitespace")  // split(Invert(\w+|[^\w\s]+), Removed)
    return std::make_unique<Split>(std::string(kWordClass) + "+|" + kNotWordOrSpace + "+", false, Behavior::Removed,
                                   true);
  if (type == "WhitespaceSplit") return std::make_unique<Split>(kSpaceClass, false, Behavior::Removed, false);
  if (type == "Punctuation") {
    Behavior b = j.contains("behavior") ? parse_behavior(j["behavior"]) : Behavior::Isolated;
    return std::make_unique<Split>(kPunctClass, false, b, false);
  }
  if (type == "BertPreTokenizer") {  // whitespace removed, then each punctuation character isolated
    std::vector<std::unique_ptr<PreTokenizer>> items;
    items.push_back(std::make_unique<Split>(kSpaceClass, false, Behavior::Removed, false));
    items.push_back(std::make_unique<Split>(kPunctClass, false, Behavior::Isolated, false));
    return std::make_unique<Sequence>(std::move(items));
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
