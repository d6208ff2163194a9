// A compiled PCRE2 pattern (UTF + Unicode properties, JIT when available) standing in for the
// Oniguruma regexes of tokenizers' Split / ByteLevel pre-tokenizers.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct pcre2_real_code_8;

namespace mlxgp::tok {

class Regex {
 public:
  // Throws [tokenizer] naming `what` if the pattern does not compile.
  Regex(const std::string& pattern, const std::string& what, bool literal = false);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping matches, left to right, as byte ranges [first, second). `text` must be valid
  // UTF-8. Empty matches are skipped, as tokenizers' find_matches does.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  pcre2_real_code_8* code_ = nullptr;
};

}  // namespace mlxgp::tok
