// Tokenizer: encode/decode identical to HF `tokenizers`. Built from tokenizer.json (+ the optional
// tokenizer_config.json) or from GGUF metadata (tokenizer.ggml.*).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <mlx/io.h>

namespace mlxgp {

class Tokenizer {
 public:
  // Throws [tokenizer] on unreadable/malformed files or unsupported components (named).
  // Supported: byte-level BPE (GPT-2 / Llama-3 / Qwen2-3 / SmolLM style) with normalizer null/NFC,
  // pre-tokenizers ByteLevel/Split/Digits/Sequence, post-processors ByteLevel/TemplateProcessing,
  // decoder ByteLevel. An empty config path means the tokenizer_config.json next to the file, if any.
  static std::shared_ptr<Tokenizer> from_files(const std::string& tokenizer_json_path,
                                               const std::string& tokenizer_config_path = "");
  static std::shared_ptr<Tokenizer> from_gguf(
      const std::unordered_map<std::string, mlx::core::GGUFMetaData>& metadata);

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
  // The chat template string from tokenizer_config.json / GGUF metadata, empty if none.
  const std::string& chat_template() const;

  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// Emits text as soon as it is final: never a broken UTF-8 sequence; the concatenation of all
// push() results and flush() equals tokenizer.decode(all ids). push() throws like decode() on a
// bad id (and then leaves its state unchanged).
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(std::shared_ptr<const Tokenizer> tokenizer, bool skip_special_tokens = false);
  std::string push(int id);
  std::string flush();

 private:
  std::shared_ptr<const Tokenizer> tokenizer_;
  bool skip_special_;
  std::string pending_;  // decoded bytes not yet returned (an unfinished UTF-8 sequence)
};

}  // namespace mlxgp
