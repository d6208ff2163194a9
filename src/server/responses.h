// The OpenAI response objects: completions and chat completions, whole or as stream chunks, and usage.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "mlxgp/server.h"
#include "mlxgp/stopping.h"

namespace mlxgp::server {

struct ResponseHead {
  Endpoint endpoint = Endpoint::Completions;
  std::string id;  // "cmpl-..." / "chatcmpl-..."
  long long created = 0;
  std::string model;
};

ResponseHead new_head(Endpoint endpoint, const std::string& model);
// A tool call's id, as OpenAI writes them: "call_" and 24 random characters.
std::string new_tool_call_id();

// OpenAI's finish_reason: "stop" (EOS, a stop string, `cut` = the text was cut at a stop), "length", or
// "abort" for a request the server ended.
std::string finish_reason_name(FinishReason reason, bool cut);

nlohmann::ordered_json usage_json(int prompt_tokens, int completion_tokens);
// One choice of a whole response.
nlohmann::ordered_json choice_json(const ResponseHead& head, int index, const std::string& text,
                                   const std::string& finish_reason, const nlohmann::ordered_json& logprobs = nullptr);
// A chat choice whose message is given (a reply read for reasoning and tool calls, chat_reply.h).
nlohmann::ordered_json message_choice_json(int index, nlohmann::ordered_json message, const std::string& finish_reason,
                                           const nlohmann::ordered_json& logprobs = nullptr);
nlohmann::ordered_json response_json(const ResponseHead& head, nlohmann::ordered_json choices,
                                     nlohmann::ordered_json usage);
// A stream chunk for one choice: `role` (chat's first chunk), a text delta, or the finish reason.
nlohmann::ordered_json chunk_json(const ResponseHead& head, int index, const std::optional<std::string>& text,
                                  bool role, const std::optional<std::string>& finish_reason,
                                  const nlohmann::ordered_json& logprobs = nullptr);
// A chat stream chunk with the given `delta` object (reasoning_content, content or tool_calls).
nlohmann::ordered_json delta_chunk_json(const ResponseHead& head, int index, nlohmann::ordered_json delta,
                                        const nlohmann::ordered_json& logprobs = nullptr);
// The final usage chunk (stream_options.include_usage): no choices.
nlohmann::ordered_json usage_chunk_json(const ResponseHead& head, nlohmann::ordered_json usage);

// "data: <json>\n\n" (invalid UTF-8 replaced).
std::string sse(const nlohmann::ordered_json& event);
// JSON text with invalid UTF-8 replaced.
std::string dump(const nlohmann::ordered_json& j);

}  // namespace mlxgp::server
