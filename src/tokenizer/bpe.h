// The BPE model of tokenizers: a vocabulary, ranked merges, optional byte fallback, and a bounded
// per-word cache.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/model.h"

namespace mlxgp::tok {

struct BpeOptions {
  bool ignore_merges = false;  // a word that is itself in the vocabulary is one token (Llama-3)
  // Only for words of newlines alone (llama.cpp's gemma4 pre-type: "\n\n" stays one token whatever the merges say).
  bool whole_newline_runs = false;
  std::optional<int> unk_id;   // id for characters missing from the vocabulary
  bool fuse_unk = false;       // consecutive unknowns become one unk token
  bool byte_fallback = false;  // unknown characters become their <0xNN> byte tokens
};

class Bpe : public Model {
 public:
  // Throws [tokenizer] if a merge names a token (or a merged result) missing from the vocabulary.
  Bpe(Vocab vocab, const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions opts);

  // Appends the ids of one pre-tokenized word.
  void tokenize(std::string_view word, std::vector<int>& out) const override;

  const Vocab& vocab() const override { return vocab_; }

 private:
  void merge_word(std::string_view word, std::vector<int>& out) const;

  Vocab vocab_;
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int, int>> merges_;
  BpeOptions opts_;
  std::array<int, 256> byte_ids_;  // <0xNN> token ids for byte fallback, -1 if absent

  // Cache of word -> ids, cleared when full so memory stays bounded (a few MB) while adapting to
  // the text at hand. tokenizers keeps 10k words and then stops caching.
  static constexpr size_t kCacheCapacity = 50000;
  static constexpr size_t kMaxCachedWordBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int>, StringHash, std::equal_to<>> cache_;
};

}  // namespace mlxgp::tok
