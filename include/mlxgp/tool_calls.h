// Tool calls in a chat reply: the formats models write them in (Hermes / Qwen `<tool_call>` JSON, Llama 3
// JSON), the choice of format from a chat template, and a parser that turns a reply's text into OpenAI
// tool calls, whole or as it streams, with the constrained forms vLLM uses for tool_choice "required"
// and a named function.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlxgp {

enum class ToolCallFormat {
  None,    // the reply is never parsed for calls
  Hermes,  // <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>, one or several (Hermes, Qwen 2.5 / 3)
  Llama3,  // {"name": ..., "parameters": {...}} (";"-separated), optionally after <|python_tag|> (Llama 3.x)
};

// "hermes" | "llama3" | "none"; throws [tool_calls] naming the accepted names otherwise.
ToolCallFormat parse_tool_call_format(const std::string& name);
const char* tool_call_format_name(ToolCallFormat format);
// The format a chat template tells its model to write: a template that writes `<tool_call>` is Hermes;
// a Llama 3 template (`<|start_header_id|>`) that renders tools (`<|python_tag|>` or a "parameters"
// object) is Llama 3; anything else None.
ToolCallFormat tool_call_format_for_template(const std::string& chat_template);

// How a reply holds its calls.
struct ToolCallRules {
  enum class Kind {
    Format,  // tool_choice "auto": the model's own format, around free text
    Array,   // tool_choice "required": the whole reply is vLLM's [{"name": ..., "parameters": {...}}, ...]
    Named,   // a named tool_choice: the whole reply is that function's arguments
  };
  Kind kind = Kind::Format;
  ToolCallFormat format = ToolCallFormat::None;  // Kind::Format
  std::string name;                              // Kind::Named
  int max_calls = 0;                             // > 0: later calls are dropped (parallel_tool_calls false: 1)
};

// One piece of a parsed reply, in order: text, or a part of call `index` (its first piece carries the
// name; the concatenated `arguments` of a call are its JSON arguments).
struct ToolCallEvent {
  bool is_call = false;
  std::string text;  // !is_call
  int index = -1;    // is_call
  std::string name;  // is_call: non-empty on the call's first piece
  std::string arguments;
};

// Streams a reply: push() the text as it arrives and get what is decided; finish() at the end. Text
// that may still begin a call is held back, and a call comes out once it is complete (so a malformed
// one can still turn back into text), except Named, whose arguments stream as they arrive. Split-
// invariant: the events concatenate to the same reply however the text is cut.
class ToolCallParser {
 public:
  explicit ToolCallParser(ToolCallRules rules);
  std::vector<ToolCallEvent> push(const std::string& text);
  std::vector<ToolCallEvent> finish();
  int calls() const { return calls_; }  // calls emitted so far

 private:
  void run(bool final, std::vector<ToolCallEvent>& out);
  void run_hermes(bool final, std::vector<ToolCallEvent>& out);
  void run_llama3(bool final, std::vector<ToolCallEvent>& out);
  void emit_text(const std::string& text, std::vector<ToolCallEvent>& out);
  void emit_call(const std::string& name, const std::string& arguments, std::vector<ToolCallEvent>& out);

  ToolCallRules rules_;
  std::string buf_;          // text not decided yet
  bool in_call_ = false;     // Hermes: inside <tool_call>
  bool after_call_ = false;  // whitespace since the last call is held (dropped before a call or at the end)
  std::string pending_ws_;   // that whitespace
  int llama_state_ = 0;      // Llama 3: 0 undecided, 1 text, 2 JSON calls (held to the end)
  int calls_ = 0;            // calls emitted
  int seen_ = 0;             // calls parsed (emitted or dropped past max_calls)
  bool named_started_ = false;
};

struct ToolCall {
  std::string name;
  std::string arguments;  // JSON text
};

// A whole reply: the text outside the calls (empty when none) and the calls.
struct ParsedToolCalls {
  std::string content;
  std::vector<ToolCall> calls;
};
ParsedToolCalls parse_tool_calls(const ToolCallRules& rules, const std::string& text);

// The JSON schema that holds a reply to the calls (vLLM's structured output for tool_choice): Array, each
// item {"name": one of the tools' names, "parameters": that tool's parameters schema}, at least one and at
// most `max_calls` (> 0) items; Named, the function's parameters (an empty object schema when it has none).
// `tools` is the OpenAI list [{"type": "function", "function": {"name", "parameters", ...}}, ...].
std::string tool_calls_schema(const nlohmann::ordered_json& tools, const ToolCallRules& rules);

}  // namespace mlxgp
