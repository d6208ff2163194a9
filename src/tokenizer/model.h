// The model stage of tokenizers (BPE, Unigram): turns one pre-tokenized word into ids.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mlxgp::tok {

// Transparent hashing so vocabulary lookups take string_views without allocating.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int, StringHash, std::equal_to<>>;

class Model {
 public:
  virtual ~Model() = default;
  // Appends the ids of one pre-tokenized word. Throws [tokenizer] if the model cannot represent
  // it (a Unigram model without unk_id meeting an unknown character, as tokenizers errors).
  virtual void tokenize(std::string_view word, std::vector<int>& out) const = 0;
  // token -> id (for duplicated tokens, the id tokenizers looks up).
  virtual const Vocab& vocab() const = 0;
  // id -> token for every id the model has (may include ids shadowed in vocab() by duplicates).
  virtual std::vector<std::pair<int, std::string>> extra_tokens() const { return {}; }
};

// "<0x41>" for byte 0x41: the byte-fallback token spelling of tokenizers (upper-case hex).
std::string byte_token(unsigned char b);

}  // namespace mlxgp::tok
