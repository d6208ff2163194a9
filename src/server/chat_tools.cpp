#include "server/chat_tools.h"

#include <regex>
#include <set>

#include "mlxgp/error.h"
#include "mlxgp/server.h"
#include "server/known_keys.h"

namespace mlxgp::server {

using ojson = nlohmann::ordered_json;

namespace {

bool given(const ojson& body, const char* key) { return body.contains(key) && !body[key].is_null(); }

// OpenAI's tool shape: {"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}},
// the name as OpenAI restricts it (a-z, A-Z, 0-9, _ and -, at most 64 characters).
void check_tools(const ojson& tools) {
  if (!tools.is_array())
    throw ApiError(400, "'tools' must be a list of {\"type\": \"function\", ...} objects", "tools");
  static const std::regex kName("[a-zA-Z0-9_-]{1,64}");
  std::set<std::string> names;
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string at = "tools[" + std::to_string(i) + "]";
    const ojson& t = tools[i];
    if (!t.is_object()) throw ApiError(400, at + " must be an object", at);
    refuse_unknown_keys(t, {"type", "function"}, at);
    if (!t.contains("type") || t["type"] != "function")
      throw ApiError(400, at + ".type must be \"function\" (the only tool type of chat completions)", at + ".type");
    if (!t.contains("function") || !t["function"].is_object())
      throw ApiError(400, at + ".function must be an object", at + ".function");
    const ojson& f = t["function"];
    for (auto& [k, v] : f.items()) {
      const std::string field = at + ".function." + k;
      if (k == "name") {
        if (!v.is_string() || !std::regex_match(v.get<std::string>(), kName))
          throw ApiError(400, field + " must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -", field);
        if (!names.insert(v.get<std::string>()).second)
          throw ApiError(400, at + ": two tools are named '" + v.get<std::string>() + "'", field);
      } else if (k == "description") {
        if (!v.is_string() && !v.is_null()) throw ApiError(400, field + " must be a string", field);
      } else if (k == "parameters") {
        if (!v.is_object() && !v.is_null()) throw ApiError(400, field + " must be a JSON schema object", field);
      } else if (k == "strict") {
        if (!v.is_boolean() && !v.is_null()) throw ApiError(400, field + " must be a boolean", field);
      } else {
        throw ApiError(400, at + ".function: unknown field '" + k + "'", field);
      }
    }
    if (!f.contains("name")) throw ApiError(400, at + ".function.name is required", at + ".function.name");
  }
}

}  // namespace

ojson template_tools(const ojson& body) {
  if (!given(body, "tools")) return nullptr;
  check_tools(body["tools"]);
  return body["tools"];
}

bool is_tool_field(const std::string& key) {
  return key == "tools" || key == "tool_choice" || key == "parallel_tool_calls" || key == "functions" ||
         key == "function_call";
}

ChatTools parse_chat_tools(const ojson& body, ToolCallFormat format) {
  // The legacy function-calling fields are refused rather than mapped: one way to ask for calls.
  for (const char* legacy : {"functions", "function_call"})
    if (given(body, legacy))
      throw ApiError(400,
                     std::string("'") + legacy + "' is OpenAI's deprecated form of " +
                         (legacy == std::string("functions") ? "'tools'" : "'tool_choice'") + "; send that instead",
                     legacy);
  ChatTools r;
  r.tools = template_tools(body);
  const bool has_tools = r.tools.is_array() && !r.tools.empty();
  bool parallel = true;
  if (given(body, "parallel_tool_calls")) {
    if (!body["parallel_tool_calls"].is_boolean())
      throw ApiError(400, "'parallel_tool_calls' must be a boolean", "parallel_tool_calls");
    parallel = body["parallel_tool_calls"].get<bool>();
  }
  // OpenAI's default: "auto" with tools, "none" without.
  std::string choice = has_tools ? "auto" : "none", named;
  if (given(body, "tool_choice")) {
    const ojson& c = body["tool_choice"];
    if (c.is_string()) {
      choice = c.get<std::string>();
      if (choice != "none" && choice != "auto" && choice != "required")
        throw ApiError(400, "'tool_choice' must be \"none\", \"auto\", \"required\" or a named function",
                       "tool_choice");
    } else if (c.is_object() && c.contains("type") && c["type"] == "function" && c.contains("function") &&
               c["function"].is_object() && c["function"].contains("name") && c["function"]["name"].is_string()) {
      refuse_unknown_keys(c, {"type", "function"}, "tool_choice");
      refuse_unknown_keys(c["function"], {"name"}, "tool_choice.function");
      choice = "named";
      named = c["function"]["name"].get<std::string>();
    } else {
      throw ApiError(400, "'tool_choice' must be a string or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                     "tool_choice");
    }
  }
  if (choice == "none") return r;  // vLLM: the tools are still rendered, the reply is not read for calls
  if (!has_tools) throw ApiError(400, "'tool_choice' \"" + choice + "\" needs a non-empty 'tools' list", "tool_choice");
  ToolCallRules rules;
  rules.max_calls = parallel ? 0 : 1;
  if (choice == "auto") {
    // Named after the field that asked for it: tool_choice, or tools when "auto" is the default.
    if (format == ToolCallFormat::None)
      throw ApiError(400,
                     "tool_choice \"auto\" needs a tool-call format, and this model's chat template shows none: start "
                     "the server with --tool-parser hermes|llama3, or send tool_choice \"none\", \"required\" or a "
                     "named function",
                     given(body, "tool_choice") ? "tool_choice" : "tools");
    // Free generation cannot promise a schema; the constrained choices can.
    for (size_t i = 0; i < r.tools.size(); ++i)
      if (r.tools[i]["function"].value("strict", ojson(false)) == true)
        throw ApiError(400,
                       "'strict' function schemas are enforced only with tool_choice \"required\" or a named function",
                       "tools[" + std::to_string(i) + "].function.strict");
    rules.format = format;
    r.rules = rules;
    return r;
  }
  if (choice == "required") {
    rules.kind = ToolCallRules::Kind::Array;
  } else {
    bool found = false;
    for (auto& t : r.tools) found = found || t["function"]["name"] == named;
    if (!found) throw ApiError(400, "tool_choice names '" + named + "', which is not in 'tools'", "tool_choice");
    rules.kind = ToolCallRules::Kind::Named;
    rules.name = named;
  }
  try {
    r.schema = tool_calls_schema(r.tools, rules);
  } catch (const Error& e) {
    throw ApiError(400, without_component(e.what()), "tools");
  }
  r.rules = rules;
  return r;
}

ChatReplyRules chat_reply_rules(const ChatTools& tools, const std::string& prompt, bool reasoning) {
  ChatReplyRules rules;
  rules.tools = tools.rules;
  rules.reasoning = reasoning && !tools.schema;
  rules.think_opened = rules.reasoning && prompt_opens_think(prompt);
  return rules;
}

void apply_tool_schema(GenerationConfig& config, const ChatTools& tools) {
  if (!tools.schema) return;
  if (config.json_schema || config.json_object || config.regex || config.grammar)
    throw ApiError(400,
                   "a required or named 'tool_choice' constrains the reply to the tool's schema; it cannot be combined "
                   "with response_format, json_schema, regex or grammar",
                   "tool_choice");
  config.json_schema = *tools.schema;
}

}  // namespace mlxgp::server
