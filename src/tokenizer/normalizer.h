// Normalizers of tokenizer.json (NFC/NFD/NFKC/NFKD, Lowercase, Strip, Prepend, Replace, Sequence),
// applied to each text segment between added tokens, as tokenizers' NormalizedString transforms.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace mlxgp::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(std::string& text) const = 0;
};

// Builds from a tokenizer.json "normalizer" object; null gives nullptr. Throws [tokenizer] naming
// the unsupported type (e.g. BertNormalizer, Precompiled) or option.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j);

// Unicode normalization of `in` appended to `out` (nfc.cpp): compat selects NFK*, compose NF*C.
void normalize_unicode(std::string_view in, std::string& out, bool compat, bool compose);
// Full Unicode lowercase mapping per character (Rust's char::to_lowercase), appended to `out`.
void lowercase(std::string_view in, std::string& out);

// A "pattern" of tokenizers' Replace / Split: {"String": s} or {"Regex": r}.
struct Pattern {
  std::string text;
  bool literal = true;
};
Pattern parse_pattern(const nlohmann::json& j, const char* where);
// Replaces every non-overlapping match of `p` in `text` with `content`.
class Regex;
void replace_all(const Regex& re, std::string_view content, std::string& text);

}  // namespace mlxgp::tok
