#include "server/stop_text.h"

#include <algorithm>

namespace mlxgp::server {

namespace {

// The first position where a stop string starts at or after `from` (npos when none).
size_t first_stop(const std::string& text, const std::vector<std::string>& stops, size_t from) {
  size_t best = std::string::npos;
  for (auto& s : stops) {
    if (s.empty()) continue;
    size_t p = text.find(s, from);
    if (p < best) best = p;
  }
  return best;
}

}  // namespace

std::string cut_at_stop(const std::string& text, const std::vector<std::string>& stops) {
  size_t p = first_stop(text, stops, 0);
  return p == std::string::npos ? text : text.substr(0, p);
}

StopTrimmer::StopTrimmer(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (auto& s : stops_) hold_ = std::max(hold_, s.empty() ? 0 : s.size() - 1);
}

std::string StopTrimmer::push(const std::string& piece) {
  if (stopped_) return {};
  all_ += piece;
  // A stop string completed by this piece starts after what was sent (hold_ bytes were kept back).
  const size_t from = sent_ > hold_ ? sent_ - hold_ : 0;
  if (size_t p = first_stop(all_, stops_, from); p != std::string::npos) {
    stopped_ = true;
    std::string out = p > sent_ ? all_.substr(sent_, p - sent_) : std::string();
    sent_ = std::max(sent_, p);
    return out;
  }
  size_t safe = all_.size() > hold_ ? all_.size() - hold_ : 0;
  // Never split a UTF-8 character.
  while (safe > sent_ && safe < all_.size() && (static_cast<unsigned char>(all_[safe]) & 0xC0) == 0x80) --safe;
  if (safe <= sent_) return {};
  std::string out = all_.substr(sent_, safe - sent_);
  sent_ = safe;
  return out;
}

std::string StopTrimmer::finish() {
  if (stopped_ || sent_ >= all_.size()) return {};
  std::string out = all_.substr(sent_);
  sent_ = all_.size();
  return out;
}

}  // namespace mlxgp::server
