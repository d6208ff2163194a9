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
  // Matches `pattern` (the content, normalized for normalized tokens) as token t.
  void add(const AddedToken& t, std::string pattern);
  bool empty() const { return by_first_byte_.empty(); }
  // Splits `text` into segments at the added tokens it contains.
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  struct Entry {
    std::string pattern;
    int id;
    bool single_word, lstrip, rstrip;
  };
  // Candidates by first byte, longest first, so the first fit at a position is the longest.
  std::unordered_map<unsigned char, std::vector<Entry>> by_first_byte_;
  std::array<bool, 256> starts_{};  // bytes that begin some added token (fast skip)
};

}  // namespace mlxgp::tok
