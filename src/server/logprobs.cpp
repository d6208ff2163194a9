#include "server/logprobs.h"

#include <cmath>

namespace mlxgp::server {

using ojson = nlohmann::ordered_json;

namespace {

// JSON has no -inf: a token the warpers removed gets vLLM's floor.
double finite(float v) { return std::isfinite(v) ? static_cast<double>(v) : -9999.0; }

struct TokenText {
  std::string text;
  std::vector<int> bytes;
};

TokenText token_text(const Tokenizer* tokenizer, int id) {
  if (!tokenizer) return {"token_id:" + std::to_string(id), {}};
  const std::vector<int> one = {id};
  TokenText t;
  try {
    t.text = tokenizer->decode(one);
    for (unsigned char c : tokenizer->decode_bytes(one)) t.bytes.push_back(c);
  } catch (...) {
    t.text = "token_id:" + std::to_string(id);
  }
  return t;
}

}  // namespace

long long utf8_length(const std::string& text) {
  long long n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

void LogprobTrack::add(int token, const TokenLogprobs& logprobs, const std::string& piece) {
  pending_.push_back({token, logprobs, total_});
  total_ += utf8_length(piece);
}

void LogprobTrack::sent(const std::string& text) { sent_ += utf8_length(text); }

std::vector<LogprobEntry> LogprobTrack::take(bool all) {
  std::vector<LogprobEntry> out;
  while (!pending_.empty() && (all || pending_.front().offset < sent_)) {
    out.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
  return out;
}

ojson logprobs_json(Endpoint endpoint, const Tokenizer* tokenizer, const std::vector<LogprobEntry>& entries) {
  if (endpoint == Endpoint::ChatCompletions) {
    ojson content = ojson::array();
    for (auto& e : entries) {
      TokenText t = token_text(tokenizer, e.token);
      ojson top = ojson::array();
      for (auto& [id, lp] : e.logprobs.top) {
        TokenText tt = token_text(tokenizer, id);
        top.push_back(ojson{{"token", tt.text}, {"logprob", finite(lp)}, {"bytes", tt.bytes}});
      }
      content.push_back(
          ojson{{"token", t.text}, {"logprob", finite(e.logprobs.logprob)}, {"bytes", t.bytes}, {"top_logprobs", top}});
    }
    return ojson{{"content", content}, {"refusal", nullptr}};
  }
  ojson tokens = ojson::array(), token_logprobs = ojson::array(), top_logprobs = ojson::array(),
        offsets = ojson::array();
  for (auto& e : entries) {
    tokens.push_back(token_text(tokenizer, e.token).text);
    token_logprobs.push_back(finite(e.logprobs.logprob));
    ojson top = ojson::object();
    for (auto& [id, lp] : e.logprobs.top) {
      std::string key = token_text(tokenizer, id).text;
      if (!top.contains(key)) top[key] = finite(lp);  // two ids with one text: the likelier one
    }
    top_logprobs.push_back(top);
    offsets.push_back(e.offset);
  }
  return ojson{
      {"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top_logprobs}, {"text_offset", offsets}};
}

}  // namespace mlxgp::server
