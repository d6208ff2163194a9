// A chat reply read back into the OpenAI message: reasoning_content (a <think> block), content and
// tool_calls, whole or as stream deltas, from the library's ReasoningParser and ToolCallParser (tool calls
// are read from the text after the reasoning, as vLLM does).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mlxgp/reasoning.h"
#include "mlxgp/tool_calls.h"

namespace mlxgp::server {

struct ChatReplyRules {
  bool reasoning = false;              // --reasoning-format auto: a leading <think> block is reasoning_content
  bool think_opened = false;           // the prompt ended inside <think>
  std::optional<ToolCallRules> tools;  // the reply is read for tool calls
  bool active() const { return reasoning || tools.has_value(); }
};

// One choice's reply as it streams.
class ChatReply {
 public:
  explicit ChatReply(const ChatReplyRules& rules);
  // The stream deltas (OpenAI `delta` objects: {"reasoning_content"}, {"content"} or {"tool_calls"}) that
  // `text` decides; finish() gives the rest at the end.
  std::vector<nlohmann::ordered_json> push(const std::string& text);
  std::vector<nlohmann::ordered_json> finish();
  // The whole reply as an OpenAI assistant message (push() and finish() must not have been called).
  nlohmann::ordered_json message(const std::string& text);
  // finish_reason "tool_calls": the model called tools by itself (tool_choice auto); vLLM and OpenAI keep
  // "stop" for a required or named tool_choice.
  bool auto_called() const;
  // The choice's finish_reason: `reason` (stop / length / abort), or "tool_calls" when auto_called() and
  // not aborted.
  std::string finish_reason(const std::string& reason) const;

 private:
  void answer(const std::string& text, std::vector<nlohmann::ordered_json>& out);
  void calls(const std::vector<ToolCallEvent>& events, std::vector<nlohmann::ordered_json>& out);
  const std::string& id(int index);

  ChatReplyRules rules_;
  ReasoningParser reasoning_;
  std::optional<ToolCallParser> tools_;
  std::vector<std::string> ids_;  // per call index
  int whole_calls_ = -1;          // the calls message() found
};

}  // namespace mlxgp::server
