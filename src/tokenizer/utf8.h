// UTF-8 helpers shared by the tokenizer pieces. Text reaching the pre-tokenizers has been
// validated once by encode(), so the iteration helpers here assume well-formed input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mlxgp::tok {

// Offset of the first byte that starts an ill-formed sequence (overlong forms, surrogates and
// code points past U+10FFFF are ill-formed, as in Rust's str), or nullopt if `s` is valid.
std::optional<size_t> first_invalid_utf8(std::string_view s);

// Length in bytes of the sequence starting with lead byte `c` (1 for stray bytes).
inline size_t utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

// Decodes the code point at s[i] (valid UTF-8 assumed) and advances i past it.
char32_t next_code_point(std::string_view s, size_t& i);

void append_utf8(std::string& out, char32_t cp);

// Replaces each maximal ill-formed subsequence with U+FFFD, like Rust's String::from_utf8_lossy
// (which tokenizers' ByteLevel decoder uses).
std::string utf8_lossy(std::string_view bytes);

// Length of the longest prefix of `s` that ends on a complete UTF-8 sequence boundary, treating
// a trailing incomplete (but so far valid) sequence as not yet complete.
size_t complete_utf8_prefix(std::string_view s);

}  // namespace mlxgp::tok
