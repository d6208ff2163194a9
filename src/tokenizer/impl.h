// Tokenizer::Impl: the assembled pipeline (added tokens -> normalizer -> pre-tokenizer -> BPE ->
// post-processor; decoder on the way back). Built by load_json.cpp and load_gguf.cpp.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mlxgp/tokenizer.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pre_tokenizer.h"

namespace mlxgp {

struct Tokenizer::Impl {
  enum class Normalizer { None, NFC };
  // What the post-processor adds around a single sequence when add_special_tokens is on
  // (tokenizers' TemplateProcessing "single"; ByteLevel adds nothing).
  struct Template {
    std::vector<int> prefix, suffix;
  };

  std::unique_ptr<tok::Bpe> model;
  std::vector<tok::AddedToken> added;  // in tokenizer.json order
  std::unordered_map<std::string, int, tok::StringHash, std::equal_to<>> added_ids;  // content -> id
  tok::AddedTokenMatcher raw_matcher;  // added tokens with normalized = false
  tok::AddedTokenMatcher norm_matcher; // added tokens with normalized = true
  Normalizer normalizer = Normalizer::None;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
  Template post;
  bool byte_level_decoder = true;

  std::vector<std::string> id_to_token;  // model vocabulary and added tokens; "" for holes
  std::vector<bool> present;             // id has a token
  std::vector<bool> special;
  std::optional<int> bos, eos, pad;
  std::string chat_template;

  // Fills id_to_token/present/special and the matchers from model->vocab() and `added`.
  // Call again after changing `post`: it also checks the template ids exist.
  void finish();
  // Raw bytes of the tokens (before the lossy UTF-8 step). Throws on out-of-range ids.
  std::string decode_bytes(std::span<const int> ids, bool skip_special_tokens) const;
  void encode_text(std::string_view text, std::vector<int>& out) const;
};

namespace tok {
// NFC, as tokenizers' NFC normalizer. Appends the normalized text of `in` to `out`.
void nfc(std::string_view in, std::string& out);
}  // namespace tok

}  // namespace mlxgp
