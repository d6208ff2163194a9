// Tokenizer: encode/decode identical to HF `tokenizers`. Built from tokenizer.json (+ the optional
// tokenizer_config.json) or from GGUF metadata (tokenizer.ggml.*).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <mlx/io.h>

#include "mlxgp/special_tokens.h"

namespace mlxgp {

class Tokenizer {
 public:
  // Throws [tokenizer] on unreadable/malformed files or unsupported components (named).
  // Supported: models BPE (byte-level or SentencePiece-style with byte_fallback) and Unigram;
  // normalizers NFC/NFD/NFKC/NFKD/Lowercase/Strip/Prepend/Replace/Sequence; pre-tokenizers
  // ByteLevel/Split/Digits/Metaspace/Whitespace/WhitespaceSplit/Punctuation/BertPreTokenizer/
  // Sequence; post-processors ByteLevel/TemplateProcessing/Sequence; decoders ByteLevel/Metaspace/
  // ByteFallback/Fuse/Strip/Replace/Sequence. An empty config path means the tokenizer_config.json
  // next to the file, if any; with a config, the pipeline transformers builds for its
  // tokenizer_class is used (LlamaTokenizer, GemmaTokenizer, GPT2Tokenizer and Qwen2Tokenizer rebuild
  // theirs, as transformers 5, with the config's add_prefix_space), and its split_special_tokens is
  // honoured. A file's truncation / padding (which tokenizers applies, transformers not) is refused
  // without a config.
  static std::shared_ptr<Tokenizer> from_files(const std::string& tokenizer_json_path,
                                               const std::string& tokenizer_config_path = "");
  static std::shared_ptr<Tokenizer> from_gguf(const std::unordered_map<std::string, mlx::core::GGUFMetaData>& metadata);

  ~Tokenizer();

  // Throws [tokenizer] if `text` is not valid UTF-8 (names the byte offset). Safe to call from
  // several threads (the word cache is locked).
  std::vector<int> encode(std::string_view text, bool add_special_tokens = true) const;
  // Throws [tokenizer] on ids outside [0, vocab_size()) or naming no token. Bytes that do not form
  // valid UTF-8 become U+FFFD, as in HF tokenizers.
  std::string decode(std::span<const int> ids, bool skip_special_tokens = false) const;
  // The bytes decode() would turn into text, before invalid UTF-8 is replaced by U+FFFD (for
  // streaming). Throws like decode().
  std::string decode_bytes(std::span<const int> ids, bool skip_special_tokens = false) const;

  int vocab_size() const;  // including added tokens
  std::optional<int> token_to_id(std::string_view token) const;
  std::string id_to_token(int id) const;
  bool is_special(int id) const;

  std::optional<int> bos_token_id() const;
  std::optional<int> eos_token_id() const;
  std::optional<int> pad_token_id() const;
  // transformers' special_tokens_map (what apply_chat_template hands every template): the config's
  // bos/eos/unk/sep/pad/cls/mask token strings (the tokenizer class's defaults where a key is absent),
  // or for GGUF the tokens of its bos/eos/unk/pad ids.
  const SpecialTokens& special_tokens() const;
  // The chat template (chat_template.jinja, tokenizer_config.json, GGUF metadata), empty if none. With
  // named templates (a list in the config, additional_chat_templates/*.jinja), the "default" one; throws
  // [chat_template] naming the templates when there is none.
  const std::string& chat_template() const;
  // transformers' get_chat_template(chat_template, tools): `name_or_source` naming one of the named
  // templates picks it and any other non-empty text is the template itself; else the "tool_use" template
  // when `with_tools` and there is one, else chat_template(). Empty: the tokenizer has none.
  std::string select_chat_template(const std::string& name_or_source = "", bool with_tools = false) const;
  // The named templates as (name, source) pairs; a single unnamed template is not listed.
  const std::vector<std::pair<std::string, std::string>>& named_chat_templates() const;

  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);

 private:
  friend class StreamingDetokenizer;
  std::unique_ptr<Impl> impl_;
};

// Emits text as soon as it is final: never a broken UTF-8 sequence, nor a run of byte-fallback
// tokens that later ones could still change; with Metaspace decoders the leading space of the
// first token is dropped exactly as decode() drops it. The concatenation of all push() results
// and flush() equals tokenizer.decode(all ids). push() throws like decode() on a bad id (and
// then leaves its state unchanged).
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(std::shared_ptr<const Tokenizer> tokenizer, bool skip_special_tokens = false);
  std::string push(int id);
  std::string flush();

 private:
  std::shared_ptr<const Tokenizer> tokenizer_;
  bool skip_special_;
  std::vector<int> window_;  // ids not yet turned into returned text
  bool started_ = false;     // some non-empty text was returned (later ids continue it)
};

}  // namespace mlxgp
