// Reasoning in a chat reply: the text of a leading <think>...</think> block (Qwen3, DeepSeek-R1, ...),
// split from the answer as vLLM's reasoning parsers do (reasoning_content and content), whole or as it
// streams. A chat template may open the block itself at the end of the prompt (DeepSeek-R1, Qwen3 with
// thinking forced); the reply then starts inside it.
#pragma once

#include <string>
#include <vector>

namespace mlxgp {

// Whether a rendered prompt ends inside an open <think> block (its last tag is <think>, not closed).
bool prompt_opens_think(const std::string& prompt);

// One piece of a reply, in order: reasoning text or answer text.
struct ReasoningEvent {
  bool reasoning = false;
  std::string text;
};

// Streams a reply: push() the text as it arrives, finish() at the end. The reply is reasoning from a
// leading <think> (after whitespace only) or from the start when `opened`, up to </think>; everything
// after </think>, or the whole reply when it does not begin with <think>, is the answer, verbatim. The
// tags are left out; bytes that may begin a tag are held back. Split-invariant, like ToolCallParser.
class ReasoningParser {
 public:
  explicit ReasoningParser(bool opened = false);
  std::vector<ReasoningEvent> push(const std::string& text);
  std::vector<ReasoningEvent> finish();
  bool seen() const { return seen_; }  // the reply is (or was) inside a <think> block

 private:
  void run(bool final, std::vector<ReasoningEvent>& out);
  enum class State { Start, Reasoning, Answer } state_;
  bool seen_;
  std::string buf_;
};

struct SplitReasoning {
  bool has_reasoning = false;  // a <think> block was there (opened or written)
  std::string reasoning;
  std::string content;
};
SplitReasoning split_reasoning(const std::string& text, bool opened = false);

}  // namespace mlxgp
