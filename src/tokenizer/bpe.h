// The BPE model of tokenizers: a vocabulary, ranked merges, and a bounded per-word cache.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mlxgp::tok {

// Transparent hashing so vocabulary lookups take string_views without allocating.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int, StringHash, std::equal_to<>>;

struct BpeOptions {
  bool ignore_merges = false;        // a word that is itself in the vocabulary is one token (Llama-3)
  std::optional<int> unk_id;         // id for characters missing from the vocabulary
  bool fuse_unk = false;             // consecutive unknowns become one unk token
};

class Bpe {
 public:
  // Throws [tokenizer] if a merge names a token (or a merged result) missing from the vocabulary.
  Bpe(Vocab vocab, const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions opts);

  // Appends the ids of one pre-tokenized word.
  void tokenize(std::string_view word, std::vector<int>& out) const;

  const Vocab& vocab() const { return vocab_; }

 private:
  void merge_word(std::string_view word, std::vector<int>& out) const;

  Vocab vocab_;
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int, int>> merges_;
  BpeOptions opts_;

  // Cache of word -> ids, cleared when full so memory stays bounded (a few MB) while adapting to
  // the text at hand. tokenizers keeps 10k words and then stops caching.
  static constexpr size_t kCacheCapacity = 50000;
  static constexpr size_t kMaxCachedWordBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int>, StringHash, std::equal_to<>> cache_;
};

}  // namespace mlxgp::tok
