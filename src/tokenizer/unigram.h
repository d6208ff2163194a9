// The Unigram model of tokenizers (SentencePiece unigram): the best-scoring segmentation of a word
// into vocabulary pieces (Viterbi over a byte trie), unknown characters fused into one unk, and
// optional byte fallback.
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/model.h"

namespace mlxgp::tok {

class Unigram : public Model {
 public:
  // Throws [tokenizer] if unk_id is outside the vocabulary or the vocabulary is empty.
  Unigram(std::vector<std::pair<std::string, double>> pieces, std::optional<int> unk_id, bool byte_fallback);

  void tokenize(std::string_view word, std::vector<int>& out) const override;
  const Vocab& vocab() const override { return vocab_; }
  std::vector<std::pair<int, std::string>> extra_tokens() const override;

 private:
  void segment(std::string_view word, std::vector<std::string_view>& pieces) const;
  // Children of a trie node, sorted by byte.
  struct Node {
    std::vector<std::pair<unsigned char, int>> next;
    int id = -1;  // the piece ending here (the id tokenizers looks the piece up as)
  };
  int child(int node, unsigned char b) const;

  std::vector<std::pair<std::string, double>> pieces_;
  Vocab vocab_;
  std::vector<Node> trie_{1};
  std::optional<int> unk_id_;
  bool byte_fallback_;
  double min_score_;

  static constexpr size_t kCacheCapacity = 50000;
  static constexpr size_t kMaxCachedWordBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int>, StringHash, std::equal_to<>> cache_;
};

}  // namespace mlxgp::tok
