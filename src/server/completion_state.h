// What a Completion holds: its request's channel and engine ids, and the stream's progress.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "mlxgp/server.h"
#include "server/chat_reply.h"
#include "server/logprobs.h"
#include "server/responses.h"
#include "server/stop_text.h"
#include "server/worker.h"

namespace mlxgp::server {

struct Completion::State {
  std::shared_ptr<Worker> worker;
  std::shared_ptr<Channel> channel;
  std::shared_ptr<std::atomic<int>> open;  // Service's count of open completions (this one included)
  std::vector<int> ids;                    // engine ids, one per prompt
  ResponseHead head;
  int n = 1;                       // choices per prompt
  std::vector<int> prompt_tokens;  // per prompt
  std::vector<std::string> stop;
  bool include_usage = false;
  int top_logprobs = -1;                       // -1: no logprobs
  std::shared_ptr<const Tokenizer> tokenizer;  // names the logprobs' tokens
  std::vector<LogprobTrack> logprobs;          // per choice
  ChatReplyRules reply;                        // chat: how replies are read (reasoning, tool calls)
  // Streaming progress.
  std::vector<StopTrimmer> trimmers;  // per choice
  std::vector<ChatReply> replies;     // per choice when reply.active()
  std::vector<bool> delivered;        // per prompt: its finish chunks are out
  std::deque<std::string> outbox;
  bool roles_sent = false;
  bool all_sent = false;  // [DONE] is in the outbox
  int completion_tokens = 0;
};

}  // namespace mlxgp::server
