#include "tokenizer/decoder.h"

#include <nlohmann/json.hpp>

#include "mlxgp/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace mlxgp::tok {

using json = nlohmann::json;

struct Decoder::Step {
  enum Kind { ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace } kind;
  std::string text;      // Metaspace replacement, Replace content
  char32_t content = 0;  // Strip
  int start = 0, stop = 0;
  bool prepend = true;  // Metaspace: prepend_scheme != never
  std::shared_ptr<Regex> re;
  bool after_fuse = false;
};

namespace {

constexpr const char* kReplacementChar = "\xEF\xBF\xBD";

void strip_token(std::string& t, char32_t content, int start, int stop) {
  std::vector<std::pair<size_t, char32_t>> chars;  // (byte offset, code point)
  for (size_t i = 0; i < t.size();) {
    size_t at = i;
    chars.emplace_back(at, next_code_point(t, i));
  }
  size_t b = 0, e = chars.size();
  for (int k = 0; k < start && b < e && chars[b].second == content; ++k) ++b;
  for (int k = 0; k < stop && e > b && chars[e - 1].second == content; ++k) --e;
  size_t bb = b < chars.size() ? chars[b].first : t.size();
  size_t eb = e < chars.size() ? chars[e].first : t.size();
  t = t.substr(bb, eb - bb);
}

}  // namespace

int parse_byte_token(const std::string& t) {
  // tokenizers' ByteFallback: exactly "<0x" + two hex digits + ">".
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

Decoder::Decoder(std::vector<Step> steps) : steps_(std::move(steps)) {
  bool fused = false;
  for (auto& s : steps_) {
    s.after_fuse = fused;
    if (s.kind == Step::Fuse || s.kind == Step::ByteLevel) fused = true;  // ByteLevel also joins
    if (s.kind == Step::ByteFallback) byte_fallback_ = true;
    if (s.kind == Step::Strip && s.stop > 0 && s.after_fuse) streamable_ = false;
  }
}

Decoder::~Decoder() = default;

std::string Decoder::decode(std::vector<std::string> tokens, bool at_start) const {
  const auto& table = ByteLevelTable::get();
  for (size_t si = 0; si < steps_.size(); ++si) {
    const Step& s = steps_[si];
    switch (s.kind) {
      case Step::ByteLevel: {
        std::string bytes;
        for (const auto& t : tokens) table.decode_token(t, bytes);
        // tokenizers makes the text valid here; when ByteLevel is last the caller does it, so
        // the streaming detokenizer can still see an unfinished character.
        tokens.assign(1, si + 1 == steps_.size() ? std::move(bytes) : utf8_lossy(bytes));
        break;
      }
      case Step::Metaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          std::string out;
          bool drop = i == 0 && at_start && s.prepend;  // the first token loses every replacement
          const std::string& t = tokens[i];
          for (size_t k = 0; k < t.size();) {
            if (t.compare(k, s.text.size(), s.text) == 0) {
              if (!drop) out += ' ';
              k += s.text.size();
            } else {
              out += t[k++];
            }
          }
          tokens[i] = std::move(out);
        }
        break;
      case Step::ByteFallback: {
        std::vector<std::string> out;
        std::string run;
        size_t run_len = 0;
        auto flush = [&] {
          if (run_len == 0) return;
          // A run of byte tokens that is not valid UTF-8 becomes one U+FFFD per byte.
          if (!first_invalid_utf8(run)) out.push_back(run);
          else
            for (size_t k = 0; k < run_len; ++k) out.emplace_back(kReplacementChar);
          run.clear();
          run_len = 0;
        };
        for (auto& t : tokens) {
          int b = parse_byte_token(t);
          if (b >= 0) {
            run += static_cast<char>(b);
            ++run_len;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case Step::Fuse: {
        std::string all;
        for (const auto& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case Step::Strip:
        for (size_t i = 0; i < tokens.size(); ++i)
          // After Fuse the only token is the whole text; a continuation's start is mid-text.
          strip_token(tokens[i], s.content, (s.after_fuse && !at_start) ? 0 : s.start, s.stop);
        break;
      case Step::Replace:
        for (auto& t : tokens) replace_all(*s.re, s.text, t);
        break;
    }
  }
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

namespace {

void add_steps(const json& j, std::vector<Decoder::Step>& steps) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail("tokenizer", "decoder must be an object with a string 'type'");
  std::string type = j["type"].get<std::string>();
  using Step = Decoder::Step;
  Step s{};
  if (type == "ByteLevel") {
    s.kind = Step::ByteLevel;
  } else if (type == "Metaspace") {
    s.kind = Step::Metaspace;
    s.text = j.contains("replacement") && j["replacement"].is_string() ? j["replacement"].get<std::string>()
                                                                       : "\xE2\x96\x81";
    std::string scheme = j.contains("prepend_scheme") && j["prepend_scheme"].is_string()
                             ? j["prepend_scheme"].get<std::string>()
                             : (j.value("add_prefix_space", true) ? "always" : "never");
    if (scheme != "always" && scheme != "first" && scheme != "never")
      fail("tokenizer", "unsupported Metaspace decoder prepend_scheme '" + scheme + "'");
    s.prepend = scheme != "never";
    size_t n = 0;
    if (s.text.empty() || (next_code_point(s.text, n), n != s.text.size()))
      fail("tokenizer", "Metaspace decoder replacement must be one character");
  } else if (type == "ByteFallback") {
    s.kind = Step::ByteFallback;
  } else if (type == "Fuse") {
    s.kind = Step::Fuse;
  } else if (type == "Strip") {
    s.kind = Step::Strip;
    if (!j.contains("content") || !j["content"].is_string())
      fail("tokenizer", "Strip decoder needs a string 'content'");
    std::string c = j["content"].get<std::string>();
    size_t n = 0;
    if (c.empty() || (s.content = next_code_point(c, n), n != c.size()))
      fail("tokenizer", "Strip decoder content must be one character");
    for (auto [key, dst] : {std::pair{"start", &s.start}, std::pair{"stop", &s.stop}}) {
      if (!j.contains(key) || !j[key].is_number_integer() || j[key].get<long long>() < 0)
        fail("tokenizer", std::string("Strip decoder needs a non-negative '") + key + "'");
      *dst = static_cast<int>(std::min<long long>(j[key].get<long long>(), 1 << 20));
    }
  } else if (type == "Replace") {
    s.kind = Step::Replace;
    Pattern p = parse_pattern(j.value("pattern", json()), "Replace decoder");
    s.re = std::make_shared<Regex>(p.text, "Replace decoder", p.literal);
    if (!j.contains("content") || !j["content"].is_string())
      fail("tokenizer", "Replace decoder needs a string 'content'");
    s.text = j["content"].get<std::string>();
  } else if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array())
      fail("tokenizer", "Sequence decoder needs a 'decoders' array");
    for (const auto& d : j["decoders"]) add_steps(d, steps);
    return;
  } else {
    fail("tokenizer", "unsupported decoder '" + type + "'");
  }
  steps.push_back(std::move(s));
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  std::vector<Decoder::Step> steps;
  add_steps(j, steps);
  return std::make_unique<Decoder>(std::move(steps));
}

}  // namespace mlxgp::tok
