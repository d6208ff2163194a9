// A chat request's `tools`, `tool_choice` and `parallel_tool_calls` (OpenAI), checked, and what they
// make of the request: the template's `tools` variable, how the reply is read for calls, and the
// structured-output schema that required / named tool choices impose (vLLM's guided decoding).
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "mlxgp/generation_config.h"
#include "mlxgp/tool_calls.h"
#include "server/chat_reply.h"

namespace mlxgp::server {

struct ChatTools {
  nlohmann::ordered_json tools;        // null when none were given: the template's `tools`
  std::optional<ToolCallRules> rules;  // the reply is read for calls (not with tool_choice "none")
  std::optional<std::string> schema;   // tool_choice "required" or named: the reply's JSON schema
};

// The body's `tools` as the template's variable: null when not given, else the list as given, checked
// (ApiError 400 naming the field, "tools[0].function.name").
nlohmann::ordered_json template_tools(const nlohmann::ordered_json& body);

// `format`: the server's tool-call format (--tool-parser, or the chat template's). Throws ApiError 400
// naming the field: a malformed tool or tool_choice, a named function that is not in `tools`,
// tool_choice without tools, "auto" when `format` is None (vLLM refuses it without a parser), and the
// legacy `functions` / `function_call` (use tools / tool_choice).
ChatTools parse_chat_tools(const nlohmann::ordered_json& body, ToolCallFormat format);

// How a chat reply is read back: tool calls as `tools` says; a <think> block as reasoning_content when
// `reasoning` (--reasoning-format auto), except under a required or named tool_choice, whose schema holds
// the whole reply. `prompt` is the rendered template (it may open <think> itself).
ChatReplyRules chat_reply_rules(const ChatTools& tools, const std::string& prompt, bool reasoning);

// A required or named tool_choice's schema as the request's structured output (ApiError 400 naming
// tool_choice when the request has one of its own).
void apply_tool_schema(GenerationConfig& config, const ChatTools& tools);

// The body fields parse_chat_tools reads.
bool is_tool_field(const std::string& key);

}  // namespace mlxgp::server
