// Chat completions: OpenAI `messages` rendered with the model's chat template into prompt ids.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxgp/tokenizer.h"

namespace mlxgp::server {

// Checks OpenAI messages (role, content as a string or a list of text parts, name, tool_calls,
// tool_call_id, reasoning_content) and returns them as the template sees them (content joined into one
// string; a tool call's `function.arguments` JSON string parsed into an object, as vLLM does before
// templating, since tool-use templates write it with `| tojson`). Throws ApiError 400 naming the bad field
// ("messages[1].content").
nlohmann::ordered_json template_messages(const nlohmann::ordered_json& messages);

struct ChatPrompt {
  std::vector<int> ids;
  std::string text;  // the rendered template
};

// transformers' apply_chat_template(messages, tools=tools, add_generation_prompt, tokenize=True): the
// rendered text holds its special tokens, so it is encoded without adding more; `tools` (null: none) is
// the template's `tools` variable, the list as given. Throws ApiError 400 when the model has no chat
// template or the template refuses the conversation (raise_exception). A non-empty `chat_template` is used
// instead of the tokenizer's (--chat-template).
ChatPrompt render_chat_prompt(const Tokenizer& tokenizer, const nlohmann::ordered_json& messages,
                              bool add_generation_prompt = true, const std::string& chat_template = {},
                              const nlohmann::ordered_json& tools = nullptr);
std::vector<int> chat_prompt_ids(const Tokenizer& tokenizer, const nlohmann::ordered_json& messages,
                                 bool add_generation_prompt = true, const std::string& chat_template = {},
                                 const nlohmann::ordered_json& tools = nullptr);

}  // namespace mlxgp::server
