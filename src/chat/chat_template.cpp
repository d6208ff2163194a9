// Public entry points: ChatTemplate and apply_chat_template, which builds the same template
// variables as transformers' tokenizer.apply_chat_template(tokenize=False).
#include "mlxgp/chat_template.h"

#include "chat/ast.h"
#include "chat/eval.h"
#include "mlxgp/error.h"

namespace mlxgp {

ChatTemplate ChatTemplate::parse(std::string source) {
  ChatTemplate t;
  t.program_ = chat::parse_program(source);
  return t;
}

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
  if (!program_) fail("chat_template", "template was not parsed");
  if (!context.is_object()) fail("chat_template", "the render context must be a JSON object");
  return chat::render_program(*program_, chat::from_json(context));
}

std::string ChatTemplate::render(const nlohmann::json& context) const {
  return render(nlohmann::ordered_json::parse(context.dump()));
}

namespace {

// transformers copies a message's reasoning (under any of its names) into `thinking` (first) and
// `reasoning_content` (last), so templates can read either (_alias_reasoning_fields).
// Also drops keys whose value is null, as apply_chat_template does (_normalize_chat_messages).
nlohmann::ordered_json normalize_message(const nlohmann::ordered_json& raw) {
  if (!raw.is_object())
    fail("chat_template", "chat messages must be JSON objects, got " + std::string(raw.type_name()));
  nlohmann::ordered_json msg = nlohmann::ordered_json::object();
  for (auto it = raw.begin(); it != raw.end(); ++it)
    if (!it.value().is_null()) msg[it.key()] = it.value();
  for (const char* key : {"reasoning_content", "thinking", "reasoning"}) {
    auto it = msg.find(key);
    if (it == msg.end() || it->is_null()) continue;
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    out["thinking"] = *it;
    for (auto m = msg.begin(); m != msg.end(); ++m) out[m.key()] = m.value();
    out.erase("reasoning_content");
    out["reasoning_content"] = *it;
    return out;
  }
  return msg;
}

}  // namespace

std::string apply_chat_template(const std::string& source, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const SpecialTokens& special_tokens,
                                const nlohmann::ordered_json& extra_context) {
  if (!messages.is_array()) fail("chat_template", "messages must be a JSON array");
  if (messages.empty()) fail("chat_template", "cannot apply a chat template to an empty conversation");
  if (!extra_context.is_object()) fail("chat_template", "extra template variables must be a JSON object");
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  // Same order as transformers: special tokens, then caller kwargs, then its own arguments.
  special_tokens.for_each([&](const char* name, const std::string& v) {
    if (!v.empty()) ctx[name] = v;
  });
  for (auto it = extra_context.begin(); it != extra_context.end(); ++it) ctx[it.key()] = it.value();
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  for (auto& m : messages) msgs.push_back(normalize_message(m));
  ctx["messages"] = msgs;
  if (!ctx.contains("tools")) ctx["tools"] = nullptr;
  if (!ctx.contains("documents")) ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = add_generation_prompt;
  return ChatTemplate::parse(source).render(ctx);
}

std::string apply_chat_template(const std::string& source, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const SpecialTokens& special_tokens) {
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  for (auto& m : messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
  return apply_chat_template(source, msgs, add_generation_prompt, special_tokens);
}

}  // namespace mlxgp
