// Pre-tokenizers of tokenizer.json (ByteLevel, Split, Digits, Metaspace, Whitespace,
// WhitespaceSplit, Punctuation, BertPreTokenizer, Sequence): each turns a list of text pieces into
// a finer list, as tokenizers' PreTokenizedString::split does.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mlxgp::tok {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Rewrites `pieces` in place. Empty pieces are dropped, as in tokenizers. `first_at_start`
  // says whether pieces[0] begins at offset 0 of the original input (Metaspace's "first"
  // prepend scheme looks at that); a pre-tokenizer updates it for its output.
  virtual void apply(std::vector<std::string>& pieces, bool& first_at_start) const = 0;
};

// Builds from a tokenizer.json "pre_tokenizer" object; null gives nullptr (no splitting).
// Throws [tokenizer] naming the unsupported type or option.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j);

// ByteLevel with the GPT-2 regex and no prefix space: what transformers builds for a GGUF "gpt2"
// vocabulary whose pre-tokenizer name it does not know.
std::unique_ptr<PreTokenizer> make_byte_level(bool add_prefix_space, bool use_regex);
// Split(regex, Isolated) followed by ByteLevel(use_regex=false): transformers' set_split_regex.
std::unique_ptr<PreTokenizer> make_split_then_byte_level(const std::string& regex);

}  // namespace mlxgp::tok
