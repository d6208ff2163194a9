// <think> blocks as reasoning_content, after vLLM's deepseek_r1 / qwen3 reasoning parsers: the reasoning
// is the text before </think> (all of the reply while it is unterminated), the content the text after it,
// both verbatim.
#include "mlxgp/reasoning.h"

#include <algorithm>

namespace mlxgp {

namespace {

const std::string kOpen = "<think>";
const std::string kClose = "</think>";

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

size_t partial_suffix(const std::string& text, const std::string& tag) {
  for (size_t k = std::min(text.size(), tag.size() - 1); k > 0; --k)
    if (text.compare(text.size() - k, k, tag, 0, k) == 0) return k;
  return 0;
}

void emit(std::vector<ReasoningEvent>& out, bool reasoning, const std::string& text) {
  if (text.empty()) return;
  if (!out.empty() && out.back().reasoning == reasoning) {
    out.back().text += text;
  } else {
    out.push_back({reasoning, text});
  }
}

}  // namespace

bool prompt_opens_think(const std::string& prompt) {
  size_t end = prompt.size();
  while (end > 0 && is_space(prompt[end - 1])) --end;
  return end >= kOpen.size() && prompt.compare(end - kOpen.size(), kOpen.size(), kOpen) == 0;
}

ReasoningParser::ReasoningParser(bool opened) : state_(opened ? State::Reasoning : State::Start), seen_(opened) {}

std::vector<ReasoningEvent> ReasoningParser::push(const std::string& text) {
  std::vector<ReasoningEvent> out;
  buf_ += text;
  run(false, out);
  return out;
}

std::vector<ReasoningEvent> ReasoningParser::finish() {
  std::vector<ReasoningEvent> out;
  run(true, out);
  return out;
}

void ReasoningParser::run(bool final, std::vector<ReasoningEvent>& out) {
  if (state_ == State::Start) {
    size_t i = 0;
    while (i < buf_.size() && is_space(buf_[i])) ++i;
    const size_t n = std::min(buf_.size() - i, kOpen.size());
    const bool match = buf_.compare(i, n, kOpen, 0, n) == 0;
    if (match && n == kOpen.size()) {
      buf_.erase(0, i + kOpen.size());
      state_ = State::Reasoning;
      seen_ = true;
    } else if (match && !final) {
      return;  // whitespace or a beginning of <think> so far
    } else {
      state_ = State::Answer;  // no <think> first: all of it is the answer
    }
  }
  if (state_ == State::Reasoning) {
    const size_t p = buf_.find(kClose);
    if (p == std::string::npos) {
      const size_t keep = final ? 0 : partial_suffix(buf_, kClose);
      emit(out, true, buf_.substr(0, buf_.size() - keep));
      buf_.erase(0, buf_.size() - keep);
      return;
    }
    emit(out, true, buf_.substr(0, p));
    buf_.erase(0, p + kClose.size());
    state_ = State::Answer;
  }
  emit(out, false, buf_);
  buf_.clear();
}

SplitReasoning split_reasoning(const std::string& text, bool opened) {
  ReasoningParser parser(opened);
  SplitReasoning r;
  auto take = [&](const std::vector<ReasoningEvent>& events) {
    for (auto& e : events) (e.reasoning ? r.reasoning : r.content) += e.text;
  };
  take(parser.push(text));
  take(parser.finish());
  r.has_reasoning = parser.seen();
  return r;
}

}  // namespace mlxgp
