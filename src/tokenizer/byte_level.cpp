#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace mlxgp::tok {

ByteLevelTable::ByteLevelTable() {
  cp_to_byte_.fill(-1);
  // Printable Latin-1 bytes stand for themselves; the rest are shifted to 256.. in byte order
  // (the GPT-2 bytes_to_unicode table that tokenizers' ByteLevel uses).
  int shifted = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + shifted++);
    append_utf8(byte_to_str_[b], cp);
    cp_to_byte_[cp] = b;
  }
}

const ByteLevelTable& ByteLevelTable::get() {
  static const ByteLevelTable table;
  return table;
}

void ByteLevelTable::encode(std::string_view text, std::string& out) const {
  for (unsigned char c : text) out += byte_to_str_[c];
}

bool ByteLevelTable::is_spelled(std::string_view token) const {
  size_t i = 0;
  while (i < token.size()) {
    char32_t cp = next_code_point(token, i);
    if (cp >= cp_to_byte_.size() || cp_to_byte_[cp] < 0) return false;
  }
  return true;
}

void ByteLevelTable::decode_token(std::string_view token, std::string& out) const {
  if (!is_spelled(token)) {
    out.append(token);
    return;
  }
  size_t i = 0;
  while (i < token.size()) out += static_cast<char>(cp_to_byte_[next_code_point(token, i)]);
}

}  // namespace mlxgp::tok
