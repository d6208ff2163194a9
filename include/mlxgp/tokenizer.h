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
  // Supported: models BPE (byte-level or SentencePiece-style with byte_fallback) and Unigram;
  // normalizers NFC/NFD/NFKC/NFKD/Lowercase/Strip/Prepend/Replace/Sequence; pre-tokenizers
  // ByteLevel/Split/Digits/Metaspace/Whitespace/WhitespaceSplit/Punctuation/BertPreTokenizer/
  // Sequence; post-processors ByteLevel/TemplateProcessing/Sequence; decoders ByteLevel/Metaspace/
  // ByteFallback/Fuse/Strip/Replace/Sequence. An empty config path means the tokenizer_config.json
  // next to the file, if any; with a config, the pipeline transformers builds for its
  // tokenizer_class is used (LlamaTokenizer and GemmaTokenizer rebuild theirs, as transformers 5).
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
  // The chat template string from tokenizer_config.json / GGUF metadata, empty if none.
  const std::string& chat_template() const;

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
