// An OpenAI completions / chat completions body turned into prompts and one GenerationConfig.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxgp/generation_config.h"
#include "mlxgp/batch_engine.h"
#include "mlxgp/loader.h"
#include "mlxgp/server.h"
#include "mlxgp/tool_calls.h"
#include "server/chat_reply.h"

namespace mlxgp::server {

struct ParsedRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::vector<std::vector<int>> prompts;  // completions may send several; chat sends one
  GenerationConfig config;                // the base with the request's fields, validated
  std::vector<std::string> stop;          // OpenAI stop: cut from the returned text
  bool stream = false;
  bool include_usage = false;
  int n = 1;
  // -1: no logprobs; k >= 0: each token's log-probability and its step's k most likely tokens (chat:
  // logprobs true + top_logprobs k; completions: logprobs k).
  int top_logprobs = -1;
  std::vector<std::string> fields;  // the body's keys, to name the field of a later refusal
  ChatReplyRules reply;             // chat: how the reply is read back (reasoning, tool calls)
  // The server may decode it speculatively with its --draft-model when it is not busy (speculation.h):
  // greedy, one choice, no logprobs, no guidance, and the body did not choose (use_speculative,
  // prompt_lookup_num_tokens, draft_layers).
  bool may_speculate = false;
};

// The body field a message names ("'num_beams'" or "num_beams"), or "" when none does.
std::string named_field(const std::string& message, const std::vector<std::string>& fields);
// The body field a refusal of the config or the engine is about: named_field, except that refusals of
// speculative decoding and of top_logprobs name the field that asked for them ("prompt-lookup" is not
// the prompt).
std::string refused_field(const std::string& message, const std::vector<std::string>& fields);

// The server's limits and overrides (ServiceOptions): --max-tokens-cap clamps max_new_tokens;
// --chat-template replaces the model's template; --tool-parser / --reasoning-format read the reply.
struct RequestLimits {
  int max_tokens_cap = 0;
  std::string chat_template;
  ToolCallFormat tool_format = ToolCallFormat::None;  // --tool-parser, or the chat template's format
  bool reasoning = true;                              // --reasoning-format auto
  std::string draft_model;                            // --draft-model (empty: none)
  int max_rows = 0;                                   // --max-batch: the most beams a request may ask for
};

// Parses a request body (JSON text). `base` is the model's generation_config.json layer. Throws
// ApiError: 400 naming the field for malformed JSON, unknown fields, wrong types and invalid values;
// 404 for another model's name.
ParsedRequest parse_request(Endpoint endpoint, const std::string& body, const LoadedModel& model,
                            const GenerationConfig& base, const std::string& model_id,
                            const RequestLimits& limits = {});

// The engine requests of a parsed request: one per prompt.
std::vector<BatchRequest> batch_requests(const ParsedRequest& p);

// The body as a JSON object (ApiError 400 otherwise).
nlohmann::ordered_json parse_body(const std::string& body);
// A request's "model", when given, must name the served model (ApiError 404 otherwise).
void check_model(const nlohmann::ordered_json& body, const std::string& model_id);

}  // namespace mlxgp::server
