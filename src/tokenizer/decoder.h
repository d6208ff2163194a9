// Decoders of tokenizer.json (ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence):
// a chain of steps over the token strings, as tokenizers' Decoder::decode_chain.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mlxgp::tok {

class Decoder {
 public:
  struct Step;
  explicit Decoder(std::vector<Step> steps);
  ~Decoder();

  // The text of `tokens`. at_start: tokens[0] is the first token of the whole sequence (Metaspace
  // and a Strip after Fuse treat it specially); otherwise `tokens` continue an earlier call whose
  // output was non-empty. The result is raw bytes (ByteLevel can end mid-character); the caller
  // applies the lossy UTF-8 step.
  std::string decode(std::vector<std::string> tokens, bool at_start) const;
  // True if the ByteFallback step is present: a run of <0xNN> tokens decodes as a whole.
  bool byte_fallback() const { return byte_fallback_; }
  // False if a step looks at the end of the whole text (Strip with stop > 0 after Fuse): the
  // streaming detokenizer then holds everything until flush.
  bool streamable() const { return streamable_; }

 private:
  std::vector<Step> steps_;
  bool byte_fallback_ = false;
  bool streamable_ = true;
};

// Builds from a tokenizer.json "decoder" object; null gives nullptr (tokens joined by spaces, as
// tokenizers does without a decoder). Throws [tokenizer] naming an unsupported type.
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j);

// "<0xNN>" -> the byte, else -1.
int parse_byte_token(const std::string& token);

}  // namespace mlxgp::tok
