// Added tokens (special or not) are found in the text before pre-tokenization, as tokenizers'
// AddedVocabulary does: leftmost-longest, non-overlapping, with single_word/lstrip/rstrip rules.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mlxgp::tok {

struct AddedToken {
  int id = -1;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

// One piece of the input: either a matched added token (id >= 0) or plain text (id < 0).
struct Segment {
  std::string_view text;
  int id = -1;
};

class AddedTokenMatcher {
 public:
  // Matches `pattern` (the content, normalized for normalized tokens) as token t; a later token
  // with the same pattern replaces an earlier one.
  void add(const AddedToken& t, const std::string& pattern);
  bool empty() const { return entries_.empty(); }
  // Splits `text` into segments at the added tokens it contains. skip_special: a special token's
  // match is left in the text (tokenizers' encode_special_tokens, transformers' split_special_tokens).
  void split(std::string_view text, std::vector<Segment>& out, bool skip_special = false) const;

 private:
  struct Entry {
    size_t length;
    int id;
    bool single_word, lstrip, rstrip, special;
  };
  // A byte trie over the patterns: the deepest entry reached from a position is the longest
  // match there (aho-corasick LeftmostLongest, as tokenizers uses).
  struct Node {
    std::vector<std::pair<unsigned char, int>> next;  // sorted by byte
    int entry = -1;
  };
  int child(int node, unsigned char b) const;
  std::vector<Node> nodes_{1};
  std::vector<Entry> entries_;
  std::array<bool, 256> starts_{};  // bytes that begin some pattern (fast skip)
};

}  // namespace mlxgp::tok
