// OpenAI `stop`: the returned text ends before the first stop string. Streaming holds back the bytes
// that may still begin a stop string, so the streamed pieces concatenate to the non-streamed text.
#pragma once

#include <string>
#include <vector>

namespace mlxgp::server {

// The text up to the first occurrence of any stop string (all of it when none occurs).
std::string cut_at_stop(const std::string& text, const std::vector<std::string>& stops);

class StopTrimmer {
 public:
  explicit StopTrimmer(std::vector<std::string> stops);
  // The text that is safe to send after `piece` arrived (possibly empty).
  std::string push(const std::string& piece);
  // The rest, at the end of the sequence.
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  size_t hold_ = 0;  // longest stop string - 1
  std::string all_;
  size_t sent_ = 0;
  bool stopped_ = false;
};

}  // namespace mlxgp::server
