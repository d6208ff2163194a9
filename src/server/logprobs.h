// OpenAI logprobs: each generated token's log-probability and its step's most likely tokens, in the chat
// format (choices[i].logprobs.content[{token, logprob, bytes, top_logprobs}]) or the completions format
// ({tokens, token_logprobs, top_logprobs, text_offset}). LogprobTrack ties a choice's tokens to the text
// sent so far, so a stop string's tokens (cut from the text) leave with it and streamed chunks carry the
// tokens of their text.
#pragma once

#include <deque>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxgp/generation_result.h"
#include "mlxgp/server.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp::server {

struct LogprobEntry {
  int token = -1;
  TokenLogprobs logprobs;
  long long offset = 0;  // where the token's text begins in the choice's text (characters)
};

class LogprobTrack {
 public:
  // A token arrived with the text it completes (possibly empty).
  void add(int token, const TokenLogprobs& logprobs, const std::string& piece);
  // `text` of the choice was sent to the client (after the stop trimming).
  void sent(const std::string& text);
  // The pending entries whose text begins within what was sent (every pending entry when `all`: the end
  // of a choice not cut at a stop string, whose final EOS token has no text).
  std::vector<LogprobEntry> take(bool all);

 private:
  std::deque<LogprobEntry> pending_;
  long long total_ = 0, sent_ = 0;
};

// The logprobs object of `entries` for the endpoint (a null tokenizer names tokens by id).
nlohmann::ordered_json logprobs_json(Endpoint endpoint, const Tokenizer* tokenizer,
                                     const std::vector<LogprobEntry>& entries);

// Characters (UTF-8 code points) of `text`.
long long utf8_length(const std::string& text);

}  // namespace mlxgp::server
