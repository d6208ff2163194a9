#include "server/responses.h"

#include <chrono>
#include <random>

namespace mlxgp::server {

using ojson = nlohmann::ordered_json;

namespace {

std::string random_chars(int n, const std::string& alphabet) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string s;
  for (int i = 0; i < n; ++i) s += alphabet[rng() % alphabet.size()];
  return s;
}

std::string random_hex(int n) { return random_chars(n, "0123456789abcdef"); }

bool chat(const ResponseHead& h) { return h.endpoint == Endpoint::ChatCompletions; }

ojson head_json(const ResponseHead& h, const char* object) {
  return ojson{{"id", h.id}, {"object", object}, {"created", h.created}, {"model", h.model}};
}

}  // namespace

ResponseHead new_head(Endpoint endpoint, const std::string& model) {
  ResponseHead h;
  h.endpoint = endpoint;
  h.id = (endpoint == Endpoint::ChatCompletions ? "chatcmpl-" : "cmpl-") + random_hex(24);
  h.created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  h.model = model;
  return h;
}

std::string new_tool_call_id() {
  return "call_" + random_chars(24, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
}

std::string finish_reason_name(FinishReason reason, bool cut) {
  if (cut) return "stop";
  switch (reason) {
    case FinishReason::Length:
    case FinishReason::MaxTime:
      return "length";
    case FinishReason::Cancelled:
      return "abort";
    default:
      return "stop";
  }
}

ojson usage_json(int prompt_tokens, int completion_tokens) {
  return ojson{{"prompt_tokens", prompt_tokens},
               {"completion_tokens", completion_tokens},
               {"total_tokens", prompt_tokens + completion_tokens}};
}

ojson choice_json(const ResponseHead& head, int index, const std::string& text, const std::string& finish_reason,
                  const ojson& logprobs) {
  ojson c = {{"index", index}};
  if (chat(head)) {
    c["message"] = ojson{{"role", "assistant"}, {"content", text}};
  } else {
    c["text"] = text;
  }
  c["logprobs"] = logprobs;
  c["finish_reason"] = finish_reason;
  return c;
}

ojson message_choice_json(int index, ojson message, const std::string& finish_reason, const ojson& logprobs) {
  return ojson{
      {"index", index}, {"message", std::move(message)}, {"logprobs", logprobs}, {"finish_reason", finish_reason}};
}

ojson response_json(const ResponseHead& head, ojson choices, ojson usage) {
  ojson r = head_json(head, chat(head) ? "chat.completion" : "text_completion");
  r["choices"] = std::move(choices);
  r["usage"] = std::move(usage);
  return r;
}

ojson chunk_json(const ResponseHead& head, int index, const std::optional<std::string>& text, bool role,
                 const std::optional<std::string>& finish_reason, const ojson& logprobs) {
  ojson r = head_json(head, chat(head) ? "chat.completion.chunk" : "text_completion");
  ojson c = {{"index", index}};
  if (chat(head)) {
    ojson delta = ojson::object();
    if (role) {
      delta["role"] = "assistant";
      delta["content"] = "";
    }
    if (text) delta["content"] = *text;
    c["delta"] = delta;
  } else {
    c["text"] = text.value_or("");
  }
  c["logprobs"] = logprobs;
  c["finish_reason"] = finish_reason ? ojson(*finish_reason) : ojson(nullptr);
  r["choices"] = ojson::array({c});
  return r;
}

ojson delta_chunk_json(const ResponseHead& head, int index, ojson delta, const ojson& logprobs) {
  ojson r = head_json(head, "chat.completion.chunk");
  r["choices"] = ojson::array(
      {ojson{{"index", index}, {"delta", std::move(delta)}, {"logprobs", logprobs}, {"finish_reason", nullptr}}});
  return r;
}

ojson usage_chunk_json(const ResponseHead& head, ojson usage) {
  ojson r = head_json(head, chat(head) ? "chat.completion.chunk" : "text_completion");
  r["choices"] = ojson::array();
  r["usage"] = std::move(usage);
  return r;
}

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

std::string sse(const ojson& event) { return "data: " + dump(event) + "\n\n"; }

}  // namespace mlxgp::server
