// Chat templates: a Jinja-subset engine that renders the chat templates shipped in
// tokenizer_config.json / GGUF metadata byte-identically to transformers' apply_chat_template
// (Jinja2 ImmutableSandboxedEnvironment with trim_blocks=True, lstrip_blocks=True, loopcontrols,
// and transformers' globals raise_exception / strftime_now / namespace / dict and its tojson filter).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxgp/special_tokens.h"

namespace mlxgp {

struct ChatMessage {
  std::string role;
  std::string content;
};

namespace chat {
struct Program;  // the parsed template (src/chat/ast.h)
}

class ChatTemplate {
 public:
  // Throws [chat_template] "... at line L" on syntax errors and unsupported constructs.
  static ChatTemplate parse(std::string source);
  // Renders with `context` as the template's variables (an object). Key order of objects is kept,
  // as in Python dicts. Throws [chat_template] <msg> for raise_exception(msg) and for runtime errors
  // (type errors, undefined attribute access), naming the line.
  std::string render(const nlohmann::ordered_json& context) const;
  std::string render(const nlohmann::json& context) const;

 private:
  std::shared_ptr<const chat::Program> program_;
};

// transformers' tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...):
// renders with messages, add_generation_prompt and the non-empty special tokens.
std::string apply_chat_template(const std::string& source, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const SpecialTokens& special_tokens = {});
// Same, with messages as JSON objects (any fields, e.g. tool_calls) and extra template variables.
std::string apply_chat_template(const std::string& source, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const SpecialTokens& special_tokens = {},
                                const nlohmann::ordered_json& extra_context = nlohmann::ordered_json::object());

}  // namespace mlxgp
