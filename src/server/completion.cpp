// Completion: a request's events turned into OpenAI stream chunks, or its whole response.
#include "server/completion_state.h"

namespace mlxgp::server {

using ojson = nlohmann::ordered_json;

Completion::Completion(std::unique_ptr<State> state, bool stream) : state_(std::move(state)), stream_(stream) {}

Completion::~Completion() {
  bool running;
  {
    std::lock_guard<std::mutex> lk(state_->channel->m);
    running = state_->channel->unfinished > 0 && !state_->channel->error;
  }
  if (running) cancel();
  if (state_->open) --*state_->open;
}

bool Completion::wait(std::chrono::milliseconds timeout) {
  Channel& ch = *state_->channel;
  std::unique_lock<std::mutex> lk(ch.m);
  return ch.cv.wait_for(lk, timeout, [&] { return ch.unfinished == 0 || ch.error.has_value(); });
}

void Completion::cancel() { state_->worker->cancel(state_->ids); }

namespace {

// A stream chunk as an event. With stream_options.include_usage, OpenAI gives every chunk before the
// usage chunk a "usage": null.
std::string chunk_event(bool include_usage, ojson chunk) {
  if (include_usage) chunk["usage"] = nullptr;
  return sse(chunk);
}

}  // namespace

std::optional<std::string> Completion::next_event(std::chrono::milliseconds keep_alive) {
  State& s = *state_;
  const auto deadline = std::chrono::steady_clock::now() + keep_alive;
  while (s.outbox.empty()) {
    if (s.all_sent) return std::nullopt;
    if (s.roles_sent && std::chrono::steady_clock::now() >= deadline) return std::string(": keep-alive\n\n");
    const int choices = static_cast<int>(s.trimmers.size());
    if (!s.roles_sent) {
      s.roles_sent = true;
      if (s.head.endpoint == Endpoint::ChatCompletions)
        for (int c = 0; c < choices; ++c)
          s.outbox.push_back(chunk_event(s.include_usage, chunk_json(s.head, c, std::nullopt, true, std::nullopt)));
      continue;
    }
    std::deque<Channel::Token> tokens;
    std::vector<std::pair<int, GenerationResult>> finished;
    std::optional<ApiError> error;
    {
      Channel& ch = *s.channel;
      std::unique_lock<std::mutex> lk(ch.m);
      auto ready = [&] {
        if (!ch.tokens.empty() || ch.error) return true;
        for (size_t i = 0; i < ch.results.size(); ++i)
          if (ch.results[i] && !s.delivered[i]) return true;
        return false;
      };
      if (!ch.cv.wait_until(lk, deadline, ready)) return std::string(": keep-alive\n\n");
      tokens.swap(ch.tokens);
      error = ch.error;
      for (size_t i = 0; i < ch.results.size(); ++i)
        if (ch.results[i] && !s.delivered[i]) {
          s.delivered[i] = true;
          finished.emplace_back(static_cast<int>(i), std::move(*ch.results[i]));
        }
    }
    // A choice's text as chunks: as it is, or read back for reasoning and tool calls (the logprobs go
    // with the first chunk the text gives).
    auto send = [&s](int c, const std::string& text, const ojson& lp, bool last) {
      if (s.replies.empty()) {
        if (!text.empty() || !lp.is_null())
          s.outbox.push_back(chunk_event(s.include_usage, chunk_json(s.head, c, text, false, std::nullopt, lp)));
        return;
      }
      auto deltas = s.replies.at(c).push(text);
      if (last)
        for (auto& d : s.replies.at(c).finish()) deltas.push_back(std::move(d));
      if (deltas.empty() && !lp.is_null()) deltas.push_back(ojson::object());
      for (size_t i = 0; i < deltas.size(); ++i)
        s.outbox.push_back(chunk_event(
            s.include_usage, delta_chunk_json(s.head, c, std::move(deltas[i]), i == 0 ? lp : ojson(nullptr))));
    };
    for (auto& t : tokens) {
      if (t.logprobs) s.logprobs.at(t.choice).add(t.id, *t.logprobs, t.text);
      std::string text = s.trimmers.at(t.choice).push(t.text);
      ojson lp = nullptr;
      if (s.top_logprobs >= 0) {
        s.logprobs.at(t.choice).sent(text);
        auto entries = s.logprobs.at(t.choice).take(false);
        if (!entries.empty()) lp = logprobs_json(s.head.endpoint, s.tokenizer.get(), entries);
      }
      send(t.choice, text, lp, false);
    }
    if (error) {
      s.outbox.push_back(sse(error->body()));
      s.outbox.push_back("data: [DONE]\n\n");
      s.all_sent = true;
      continue;
    }
    for (auto& [prompt, result] : finished) {
      for (size_t row = 0; row < result.sequences.size(); ++row) {
        const auto& seq = result.sequences[row];
        const int c = prompt * s.n + static_cast<int>(row);
        StopTrimmer& trim = s.trimmers.at(c);
        std::string rest = trim.finish();
        ojson lp = nullptr;
        if (s.top_logprobs >= 0) {
          s.logprobs.at(c).sent(rest);
          auto entries = s.logprobs.at(c).take(!trim.stopped());
          if (!entries.empty()) lp = logprobs_json(s.head.endpoint, s.tokenizer.get(), entries);
        }
        send(c, rest, lp, true);
        std::string reason = finish_reason_name(seq.finish_reason, trim.stopped());
        if (!s.replies.empty()) reason = s.replies.at(c).finish_reason(reason);
        s.outbox.push_back(chunk_event(s.include_usage, chunk_json(s.head, c, std::nullopt, false, reason)));
        s.completion_tokens += static_cast<int>(seq.token_ids.size());
      }
    }
    bool all = true;
    for (bool d : s.delivered) all = all && d;
    if (all) {
      if (s.include_usage) {
        int prompt_tokens = 0;
        for (int p : s.prompt_tokens) prompt_tokens += p;
        s.outbox.push_back(sse(usage_chunk_json(s.head, usage_json(prompt_tokens, s.completion_tokens))));
      }
      s.outbox.push_back("data: [DONE]\n\n");
      s.all_sent = true;
    }
  }
  std::string e = std::move(s.outbox.front());
  s.outbox.pop_front();
  return e;
}

std::string Completion::response() {
  State& s = *state_;
  std::vector<GenerationResult> results;
  std::deque<Channel::Token> tokens;
  {
    Channel& ch = *s.channel;
    std::unique_lock<std::mutex> lk(ch.m);
    ch.cv.wait(lk, [&] { return ch.unfinished == 0 || ch.error; });
    if (ch.error) throw *ch.error;
    for (auto& r : ch.results) results.push_back(std::move(*r));
    tokens.swap(ch.tokens);
  }
  for (auto& t : tokens)
    if (t.logprobs) s.logprobs.at(t.choice).add(t.id, *t.logprobs, t.text);
  ojson choices = ojson::array();
  int prompt_tokens = 0, completion_tokens = 0;
  for (size_t p = 0; p < results.size(); ++p) {
    prompt_tokens += s.prompt_tokens[p];
    for (size_t row = 0; row < results[p].sequences.size(); ++row) {
      const auto& seq = results[p].sequences[row];
      const std::string text = cut_at_stop(seq.text, s.stop);
      const int index = static_cast<int>(p) * s.n + static_cast<int>(row);
      const bool cut = text.size() < seq.text.size();
      ojson lp = nullptr;
      if (s.top_logprobs >= 0) {
        s.logprobs.at(index).sent(text);
        lp = logprobs_json(s.head.endpoint, s.tokenizer.get(), s.logprobs.at(index).take(!cut));
      }
      std::string reason = finish_reason_name(seq.finish_reason, cut);
      if (s.reply.active()) {
        ChatReply reply(s.reply);
        ojson message = reply.message(text);
        reason = reply.finish_reason(reason);  // vLLM: "tool_calls" for auto tool choice only
        choices.push_back(message_choice_json(index, std::move(message), reason, lp));
      } else {
        choices.push_back(choice_json(s.head, index, text, reason, lp));
      }
      completion_tokens += static_cast<int>(seq.token_ids.size());
    }
  }
  return dump(response_json(s.head, std::move(choices), usage_json(prompt_tokens, completion_tokens)));
}

}  // namespace mlxgp::server
