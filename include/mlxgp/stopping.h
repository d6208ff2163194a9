// Stopping criteria (transformers generation/stopping_criteria.py): EOS ids, the token budget, max_time,
// stop strings matched the way StopStringCriteria matches them, and a user callback. The Generator asks
// them after every token, once per sequence, and each sequence keeps the first reason that fired.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace mlxgp {

class Tokenizer;

// Cancelled: the request was cancelled before it finished (BatchEngine::cancel).
enum class FinishReason { None, Eos, Length, StopString, StopCallback, MaxTime, Cancelled };
// "eos" | "length" | "stop_string" | "stop_callback" | "max_time" | "cancelled" ("" for None).
std::string to_string(FinishReason reason);

// A custom stopping criterion (the C++ side of a transformers StoppingCriteria): called after each new
// token of a sequence with all its ids so far (prompt, then generated tokens); returning true ends that
// sequence with FinishReason::StopCallback.
using StopCallback = std::function<bool(std::span<const int> ids)>;

// transformers StopStringCriteria. A stop string matches when it ends inside the LAST token: the last
// token must hold a suffix of the string starting at its own first byte (or the whole string anywhere
// in it), and the tokens before it must spell the rest backwards, the earliest one allowed to overhang
// the string's start. So ["st", "opper"] and ["las", "top"] match "stop", but ["stop", "at"] does not
// (the string is already complete without the last token). Matching is on bytes (byte-level
// vocabularies: HF's "byte_level" mode), looks at most max(len(stop string)) tokens back, and prompt
// tokens take part like generated ones (HF sees the whole input_ids).
class StopStringMatcher {
 public:
  // `token_bytes(id)` gives a token's bytes, or nullopt for ids naming no token (they never match).
  using TokenBytes = std::function<std::optional<std::string>(int id)>;
  // Throws [config] on an empty list or an empty string.
  StopStringMatcher(std::vector<std::string> stop_strings, TokenBytes token_bytes);
  // Token bytes from the tokenizer: each token decoded alone (byte-level symbols to bytes; added and
  // special tokens as their content, as HF's clean_tokenizer_vocab gives them).
  StopStringMatcher(std::vector<std::string> stop_strings, std::shared_ptr<const Tokenizer> tokenizer);

  // Whether one stop string ends in the last token of `ids` (one sequence: prompt + generated).
  bool matches(std::span<const int> ids) const;
  // How many trailing tokens matches() reads at most (the longest stop string's length in bytes).
  int window() const { return window_; }

 private:
  bool matches_one(const std::string& stop, std::span<const int> ids) const;
  const std::optional<std::string>& bytes_of(int id) const;

  std::vector<std::string> stops_;
  TokenBytes token_bytes_;
  int window_ = 0;
  mutable std::unordered_map<int, std::optional<std::string>> cache_;  // token id -> bytes, filled lazily
};

// Everything that can end a sequence, checked in this order (the first hit is the reason): EOS (the
// last token is one of `eos`; HF keeps it in the output), a stop string, the callback, the token budget
// (max_new_tokens / max_length / the context), then max_time.
struct StoppingCriteria {
  std::vector<int> eos;
  int budget = 0;                  // new tokens allowed
  std::optional<double> max_time;  // seconds since the generation started
  std::optional<StopStringMatcher> stop_strings;
  StopCallback callback;

  // `ids`: prompt then generated tokens of one sequence; `new_tokens`: how many are generated.
  FinishReason check(std::span<const int> ids, int new_tokens, double elapsed_seconds) const;
  // Whether check() needs the whole id sequence (stop strings or a callback) or only the last token.
  bool needs_ids() const { return stop_strings.has_value() || static_cast<bool>(callback); }
};

}  // namespace mlxgp
