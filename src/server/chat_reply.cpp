#include "server/chat_reply.h"

#include "server/responses.h"

namespace mlxgp::server {

using ojson = nlohmann::ordered_json;

ChatReply::ChatReply(const ChatReplyRules& rules) : rules_(rules), reasoning_(rules.think_opened) {
  if (rules_.tools) tools_.emplace(*rules_.tools);
}

const std::string& ChatReply::id(int index) {
  while (static_cast<int>(ids_.size()) <= index) ids_.push_back(new_tool_call_id());
  return ids_[index];
}

void ChatReply::calls(const std::vector<ToolCallEvent>& events, std::vector<ojson>& out) {
  for (auto& e : events) {
    if (!e.is_call) {
      if (!e.text.empty()) out.push_back(ojson{{"content", e.text}});
      continue;
    }
    // OpenAI's stream shape: a call's first delta has its index, id, type and name; later ones add arguments.
    ojson call = {{"index", e.index}};
    if (!e.name.empty()) {
      call["id"] = id(e.index);
      call["type"] = "function";
      call["function"] = ojson{{"name", e.name}, {"arguments", e.arguments}};
    } else {
      call["function"] = ojson{{"arguments", e.arguments}};
    }
    out.push_back(ojson{{"tool_calls", ojson::array({call})}});
  }
}

void ChatReply::answer(const std::string& text, std::vector<ojson>& out) {
  if (tools_) return calls(tools_->push(text), out);
  if (!text.empty()) out.push_back(ojson{{"content", text}});
}

std::vector<ojson> ChatReply::push(const std::string& text) {
  std::vector<ojson> out;
  if (!rules_.reasoning) {
    answer(text, out);
    return out;
  }
  for (auto& e : reasoning_.push(text)) {
    if (e.reasoning) {
      out.push_back(ojson{{"reasoning_content", e.text}});
    } else {
      answer(e.text, out);
    }
  }
  return out;
}

std::vector<ojson> ChatReply::finish() {
  std::vector<ojson> out;
  if (rules_.reasoning)
    for (auto& e : reasoning_.finish()) {
      if (e.reasoning) {
        out.push_back(ojson{{"reasoning_content", e.text}});
      } else {
        answer(e.text, out);
      }
    }
  if (tools_) calls(tools_->finish(), out);
  return out;
}

ojson ChatReply::message(const std::string& text) {
  SplitReasoning split;
  if (rules_.reasoning) {
    split = split_reasoning(text, rules_.think_opened);
  } else {
    split.content = text;
  }
  ParsedToolCalls parsed;
  if (rules_.tools) {
    parsed = parse_tool_calls(*rules_.tools, split.content);
    whole_calls_ = static_cast<int>(parsed.calls.size());
  } else {
    parsed.content = split.content;
  }
  ojson m = {{"role", "assistant"}};
  // OpenAI and vLLM send null content next to tool calls or reasoning when there is no other text.
  const bool parts = split.has_reasoning || !parsed.calls.empty();
  m["content"] = parts && parsed.content.empty() ? ojson(nullptr) : ojson(parsed.content);
  if (split.has_reasoning) m["reasoning_content"] = split.reasoning;
  if (!parsed.calls.empty()) {
    ojson calls = ojson::array();
    for (size_t i = 0; i < parsed.calls.size(); ++i)
      calls.push_back(ojson{{"id", id(static_cast<int>(i))},
                            {"type", "function"},
                            {"function", {{"name", parsed.calls[i].name}, {"arguments", parsed.calls[i].arguments}}}});
    m["tool_calls"] = std::move(calls);
  }
  return m;
}

bool ChatReply::auto_called() const {
  const int calls = whole_calls_ >= 0 ? whole_calls_ : tools_ ? tools_->calls() : 0;
  return rules_.tools && rules_.tools->kind == ToolCallRules::Kind::Format && calls > 0;
}

std::string ChatReply::finish_reason(const std::string& reason) const {
  // A reply cut by max_tokens stays "length" (as OpenAI reports it): its last call may be cut short.
  return auto_called() && reason != "abort" && reason != "length" ? "tool_calls" : reason;
}

}  // namespace mlxgp::server
