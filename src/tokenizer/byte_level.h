// GPT-2's byte <-> printable-character table ("bytes_to_unicode"), used by the ByteLevel
// pre-tokenizer and decoder: every byte gets a visible code point, so BPE works on printable text.
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace mlxgp::tok {

class ByteLevelTable {
 public:
  static const ByteLevelTable& get();
  // The UTF-8 spelling of the character standing for byte b.
  const std::string& encode_byte(unsigned char b) const { return byte_to_str_[b]; }
  // Maps `text` byte by byte to its byte-level spelling, appending to out.
  void encode(std::string_view text, std::string& out) const;
  // Appends the bytes a token stands for. Like tokenizers' ByteLevel decoder, a token holding any
  // character outside the table (e.g. an added token with a space) contributes its own UTF-8 bytes.
  void decode_token(std::string_view token, std::string& out) const;
  // True if every character of `token` is in the table.
  bool is_spelled(std::string_view token) const;

 private:
  ByteLevelTable();
  std::array<std::string, 256> byte_to_str_;
  std::array<int, 324> cp_to_byte_;  // code point -> byte, -1 if not in the table
};

}  // namespace mlxgp::tok
