// Stopping criteria. StopStringMatcher follows transformers StopStringCriteria's rules (see
// stopping.h) with plain string comparisons on the host: HF precomputes, for every vocabulary token,
// its "end overlaps" and "valid positions" in each stop string and walks back from the last token;
// here the same two tests are made on the few tokens actually read, so nothing is precomputed.
#include "mlxgp/stopping.h"

#include <algorithm>

#include "mlxgp/error.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp {

std::string to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::Eos:
      return "eos";
    case FinishReason::Length:
      return "length";
    case FinishReason::StopString:
      return "stop_string";
    case FinishReason::StopCallback:
      return "stop_callback";
    case FinishReason::MaxTime:
      return "max_time";
    case FinishReason::Cancelled:
      return "cancelled";
    case FinishReason::None:
      break;
  }
  return "";
}

namespace {

// HF _stop_string_get_matching_positions, "end overlaps": the lengths k such that the last token
// starts a match holding the stop string's last k bytes. For every occurrence of the string's last
// byte at token[i]: k = min(i + 1, |stop|), kept when token[i+1-k .. i] == stop's last k bytes (so
// either the token's prefix ends the string, or the whole string lies inside the token).
std::vector<int> end_overlaps(const std::string& token, const std::string& stop) {
  std::vector<int> out;
  const int n = static_cast<int>(stop.size());
  for (size_t i = token.find(stop.back()); i != std::string::npos; i = token.find(stop.back(), i + 1)) {
    int k = std::min(static_cast<int>(i) + 1, n);
    if (token.compare(i + 1 - k, k, stop, n - k, k) == 0) out.push_back(k);
  }
  return out;
}

// HF "valid positions": whether a token can sit just before the stop string's last `p` bytes (already
// matched by later tokens), i.e. its trailing bytes equal the bytes of the string before them; the
// token may run off the string's start. HF only records positions 1 <= p < |stop|; an empty token is
// valid at all of them.
bool valid_at(const std::string& token, const std::string& stop, int p) {
  const int n = static_cast<int>(stop.size());
  if (p < 1 || p >= n) return false;
  const int len = static_cast<int>(token.size());
  const int m = std::min(len, n - p);  // bytes of the string the token covers
  return token.compare(len - m, m, stop, n - p - m, m) == 0;
}

}  // namespace

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings, TokenBytes token_bytes)
    : stops_(std::move(stop_strings)), token_bytes_(std::move(token_bytes)) {
  if (stops_.empty()) fail("config", "field 'stop_strings' must be a non-empty list");
  for (auto& s : stops_) {
    if (s.empty()) fail("config", "field 'stop_strings' must not contain an empty string");
    window_ = std::max(window_, static_cast<int>(s.size()));
  }
  if (!token_bytes_) fail("generate", "stop strings need the tokenizer");
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings, std::shared_ptr<const Tokenizer> tokenizer)
    : StopStringMatcher(std::move(stop_strings),
                        tokenizer ? TokenBytes([tokenizer](int id) -> std::optional<std::string> {
                          if (id < 0 || id >= tokenizer->vocab_size()) return std::nullopt;
                          try {
                            const int ids[1] = {id};
                            return tokenizer->decode_bytes(ids);
                          } catch (const Error&) {  // an id inside the range that names no token
                            return std::nullopt;
                          }
                        })
                                  : TokenBytes{}) {}

const std::optional<std::string>& StopStringMatcher::bytes_of(int id) const {
  auto it = cache_.find(id);
  if (it == cache_.end()) it = cache_.emplace(id, token_bytes_(id)).first;
  return it->second;
}

bool StopStringMatcher::matches_one(const std::string& stop, std::span<const int> ids) const {
  const int n = static_cast<int>(stop.size());
  const auto& last = bytes_of(ids.back());
  if (!last) return false;
  // HF truncates input_ids to the last `window` tokens before walking back.
  const int usable = std::min<int>(static_cast<int>(ids.size()), window_);
  for (int matched : end_overlaps(*last, stop)) {
    for (int k = 1;; ++k) {
      if (matched >= n) return true;
      if (k >= usable) break;
      const auto& tok = bytes_of(ids[ids.size() - 1 - k]);
      if (!tok || !valid_at(*tok, stop, matched)) break;
      matched += static_cast<int>(tok->size());
    }
  }
  return false;
}

bool StopStringMatcher::matches(std::span<const int> ids) const {
  if (ids.empty()) return false;
  return std::any_of(stops_.begin(), stops_.end(), [&](const std::string& s) { return matches_one(s, ids); });
}

FinishReason StoppingCriteria::check(std::span<const int> ids, int new_tokens, double elapsed_seconds) const {
  if (!ids.empty() && std::find(eos.begin(), eos.end(), ids.back()) != eos.end()) return FinishReason::Eos;
  if (stop_strings && stop_strings->matches(ids)) return FinishReason::StopString;
  if (callback && callback(ids)) return FinishReason::StopCallback;
  if (new_tokens >= budget) return FinishReason::Length;
  if (max_time && elapsed_seconds > *max_time) return FinishReason::MaxTime;
  return FinishReason::None;
}

}  // namespace mlxgp
