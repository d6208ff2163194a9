#include "server/chat_prompt.h"

#include "mlxgp/chat_template.h"
#include "mlxgp/error.h"
#include "mlxgp/server.h"

namespace mlxgp::server {

using ojson = nlohmann::ordered_json;

namespace {

std::string content_text(const ojson& content, const std::string& where) {
  if (content.is_null()) return {};
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) throw ApiError(400, where + " must be a string or a list of content parts", where);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    const ojson& part = content[i];
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      throw ApiError(400, at + " must be an object with a \"type\"", at);
    if (part["type"] != "text")
      throw ApiError(
          400, at + ": content parts of type '" + part["type"].get<std::string>() + "' are not supported (text only)",
          at);
    if (!part.contains("text") || !part["text"].is_string()) throw ApiError(400, at + ".text must be a string", at);
    text += part["text"].get<std::string>();
  }
  return text;
}

}  // namespace

ojson template_messages(const ojson& messages) {
  if (!messages.is_array() || messages.empty())
    throw ApiError(400, "'messages' must be a non-empty list of messages", "messages");
  ojson out = ojson::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string where = "messages[" + std::to_string(i) + "]";
    const ojson& m = messages[i];
    if (!m.is_object()) throw ApiError(400, where + " must be an object", where);
    ojson t = ojson::object();
    for (auto& [key, value] : m.items()) {
      if (key == "role") {
        if (!value.is_string()) throw ApiError(400, where + ".role must be a string", where + ".role");
        const std::string role = value.get<std::string>();
        if (role != "system" && role != "developer" && role != "user" && role != "assistant" && role != "tool")
          throw ApiError(400, where + ".role '" + role + "' is not one of system, developer, user, assistant, tool",
                         where + ".role");
        t["role"] = role;
      } else if (key == "content") {
        t["content"] = content_text(value, where + ".content");
      } else if (key == "name" || key == "tool_call_id") {
        if (!value.is_string()) throw ApiError(400, where + "." + key + " must be a string", where + "." + key);
        t[key] = value;
      } else if (key == "tool_calls") {
        if (!value.is_array()) throw ApiError(400, where + ".tool_calls must be a list", where + ".tool_calls");
        t[key] = value;
      } else {
        throw ApiError(400, where + ": unknown field '" + key + "'", where + "." + key);
      }
    }
    if (!t.contains("role")) throw ApiError(400, where + " has no role", where + ".role");
    if (!t.contains("content")) t["content"] = "";
    out.push_back(std::move(t));
  }
  return out;
}

std::vector<int> chat_prompt_ids(const Tokenizer& tokenizer, const ojson& messages, bool add_generation_prompt,
                                 const std::string& chat_template) {
  const std::string& source = chat_template.empty() ? tokenizer.chat_template() : chat_template;
  if (source.empty())
    throw ApiError(400, "the model's tokenizer has no chat template; use /v1/completions", "messages");
  SpecialTokens special;
  if (auto id = tokenizer.bos_token_id()) special.bos_token = tokenizer.id_to_token(*id);
  if (auto id = tokenizer.eos_token_id()) special.eos_token = tokenizer.id_to_token(*id);
  std::string text;
  try {
    text = apply_chat_template(source, messages, add_generation_prompt, special);
  } catch (const Error& e) {
    throw ApiError(400, std::string("the chat template refused the messages: ") + e.what(), "messages");
  }
  try {
    return tokenizer.encode(text, /*add_special_tokens=*/false);
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "messages");
  }
}

}  // namespace mlxgp::server
