#include "server/chat_prompt.h"

#include "mlxgp/chat_template.h"
#include "mlxgp/error.h"
#include "mlxgp/server.h"
#include "server/known_keys.h"

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
    refuse_unknown_keys(part, {"type", "text"}, at);
    text += part["text"].get<std::string>();
  }
  return text;
}

// An assistant message's tool_calls as the template sees them: each call as given, with its
// `function.arguments` JSON string parsed (vLLM's _postprocess_messages; an empty one is {}).
ojson template_tool_calls(const ojson& calls, const std::string& where) {
  if (!calls.is_array()) throw ApiError(400, where + " must be a list", where);
  ojson out = ojson::array();
  for (size_t j = 0; j < calls.size(); ++j) {
    const std::string at = where + "[" + std::to_string(j) + "]";
    ojson call = calls[j];
    if (!call.is_object() || !call.contains("function") || !call["function"].is_object())
      throw ApiError(400, at + " must be an object with a 'function'", at);
    refuse_unknown_keys(call, {"id", "type", "function"}, at);
    if (call.contains("type") && call["type"] != "function")
      throw ApiError(400, at + ".type must be \"function\"", at + ".type");
    ojson& f = call["function"];
    refuse_unknown_keys(f, {"name", "arguments"}, at + ".function");
    if (!f.contains("name") || !f["name"].is_string())
      throw ApiError(400, at + ".function.name must be a string", at + ".function.name");
    ojson& args = f["arguments"];
    if (args.is_null() || (args.is_string() && args.get<std::string>().empty())) {
      args = ojson::object();
    } else if (args.is_string()) {
      try {
        args = ojson::parse(args.get<std::string>());
      } catch (const ojson::exception&) {
        throw ApiError(400, at + ".function.arguments is not valid JSON", at + ".function.arguments");
      }
    }
    out.push_back(std::move(call));
  }
  return out;
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
        if (!value.is_null()) t[key] = template_tool_calls(value, where + ".tool_calls");
      } else if ((key == "refusal" || key == "audio" || key == "function_call" || key == "annotations") &&
                 value.is_null()) {
        // What the openai client's message.model_dump() carries back as null: nothing to render.
      } else if (key == "reasoning_content") {  // an earlier reply's reasoning (Qwen3's template reads it)
        if (!value.is_null() && !value.is_string())
          throw ApiError(400, where + ".reasoning_content must be a string", where + ".reasoning_content");
        t[key] = value;
      } else {
        throw ApiError(400, where + ": unknown field '" + key + "'", where + "." + key);
      }
    }
    if (!t.contains("role")) throw ApiError(400, where + " has no role", where + ".role");
    // OpenAI: tool calls belong to assistant messages, a tool result names the call it answers.
    if (t.contains("tool_calls") && t["role"] != "assistant")
      throw ApiError(400, where + ".tool_calls belongs to an assistant message", where + ".tool_calls");
    if (m.contains("tool_call_id") && t["role"] != "tool")
      throw ApiError(400, where + ".tool_call_id belongs to a tool message", where + ".tool_call_id");
    if (t["role"] == "tool" && !t.contains("tool_call_id"))
      throw ApiError(400, where + ".tool_call_id is required for a tool message", where + ".tool_call_id");
    // OpenAI: only an assistant message may leave its content out (or null), as when it calls tools.
    if (t["role"] != "assistant" && (!m.contains("content") || m["content"].is_null()))
      throw ApiError(400, where + ".content is required for a " + t["role"].get<std::string>() + " message",
                     where + ".content");
    if (!t.contains("content")) t["content"] = "";
    out.push_back(std::move(t));
  }
  return out;
}

ChatPrompt render_chat_prompt(const Tokenizer& tokenizer, const ojson& messages, bool add_generation_prompt,
                              const std::string& chat_template, const ojson& tools) {
  std::string source = chat_template;
  if (source.empty()) {
    try {  // transformers' get_chat_template: a "tool_use" template when tools are given
      source = tokenizer.select_chat_template("", !tools.is_null());
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "messages");
    }
  }
  if (source.empty())
    throw ApiError(400, "the model's tokenizer has no chat template; use /v1/completions", "messages");
  const SpecialTokens& special = tokenizer.special_tokens();
  ChatPrompt p;
  ojson extra = ojson::object();
  if (!tools.is_null()) extra["tools"] = tools;
  try {
    p.text = apply_chat_template(source, messages, add_generation_prompt, special, extra);
  } catch (const Error& e) {
    throw ApiError(400, std::string("the chat template refused the messages: ") + e.what(), "messages");
  }
  try {
    p.ids = tokenizer.encode(p.text, /*add_special_tokens=*/false);
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "messages");
  }
  return p;
}

std::vector<int> chat_prompt_ids(const Tokenizer& tokenizer, const ojson& messages, bool add_generation_prompt,
                                 const std::string& chat_template, const ojson& tools) {
  return render_chat_prompt(tokenizer, messages, add_generation_prompt, chat_template, tools).ids;
}

}  // namespace mlxgp::server
