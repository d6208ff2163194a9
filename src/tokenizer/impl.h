// Tokenizer::Impl: the assembled pipeline (added tokens -> normalizer -> pre-tokenizer -> model ->
// post-processor; decoder on the way back). Built by load_json.cpp and load_gguf.cpp.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "mlxgp/tokenizer.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/decoder.h"
#include "tokenizer/model.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"

namespace mlxgp {

struct Tokenizer::Impl {
  // What the post-processor adds around a single sequence when add_special_tokens is on
  // (tokenizers' TemplateProcessing "single"; ByteLevel adds nothing).
  struct Template {
    std::vector<int> prefix, suffix;
  };

  std::unique_ptr<tok::Model> model;
  std::vector<tok::AddedToken> added;                                                // in tokenizer.json order
  std::unordered_map<std::string, int, tok::StringHash, std::equal_to<>> added_ids;  // content -> id
  tok::AddedTokenMatcher raw_matcher;                // added tokens with normalized = false
  tok::AddedTokenMatcher norm_matcher;               // added tokens with normalized = true
  std::unique_ptr<tok::Normalizer> normalizer;       // null: none
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;  // null: the segment is one word
  Template post;
  std::unique_ptr<tok::Decoder> decoder;  // null: tokens joined by spaces

  std::vector<std::string> id_to_token;  // model vocabulary and added tokens; "" for holes
  std::vector<bool> present;             // id has a token
  std::vector<bool> special;
  std::vector<bool> byte_token;  // id spells <0xNN> and the decoder has ByteFallback
  std::optional<int> bos, eos, pad;
  SpecialTokens special_tokens;
  std::string chat_template;  // the single template, or the "default" of the named ones ("" if none)
  std::vector<std::pair<std::string, std::string>> named_chat_templates;  // empty: a single template
  // split_special_tokens (tokenizers' encode_special_tokens): special added tokens written in the text
  // are not matched, so they encode as ordinary text.
  bool split_special_tokens = false;

  // Fills id_to_token/present/special and the matchers from the model and `added`.
  // Call again after changing `post` or `normalizer`: it also checks the template ids exist.
  void finish();
  // Throws [tokenizer] naming an id outside the vocabulary.
  void check_id(int id) const;
  // The decoder's output for `ids` before the lossy UTF-8 step (see Decoder::decode for at_start).
  std::string decode_raw(std::span<const int> ids, bool skip_special_tokens, bool at_start) const;
  // Normalizes and pre-tokenizes one segment between raw added tokens, then runs the model.
  // first_at_start: the segment begins at offset 0 of the input.
  void encode_text(std::string_view text, bool first_at_start, std::vector<int>& out) const;
};

namespace tok {
// NFC, as tokenizers' NFC normalizer. Appends the normalized text of `in` to `out`.
void nfc(std::string_view in, std::string& out);
}  // namespace tok

}  // namespace mlxgp
