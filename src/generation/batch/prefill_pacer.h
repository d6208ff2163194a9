// How many prompt tokens a joining request may prefill in one step while rows decode
// (BatchEngineOptions::prefill_step_tokens < 0): about as many as take one decode step's time, from the
// times measured so far, so a running stream's gap between two tokens stays near two steps whatever the
// device (a CPU prefills tens of tokens in a step's time, a GPU thousands).
#pragma once

#include <algorithm>
#include <cmath>

namespace mlxgp {

class PrefillPacer {
 public:
  // The fewest tokens a step prefills (a prompt always makes progress) and the budget before any
  // measurement.
  static constexpr int kMinTokens = 16;

  // A prefill call of `tokens` tokens took `seconds` (its chunk evaluated).
  void prefilled(int tokens, double seconds) {
    if (tokens > 0 && seconds > 0) per_token_ = mix(per_token_, seconds / tokens);
  }
  // A decode step with no prefill in it took `seconds`.
  void decoded(double seconds) {
    if (seconds > 0) step_ = mix(step_, seconds);
  }
  // This step's budget.
  int budget() const {
    if (per_token_ <= 0 || step_ <= 0) return kMinTokens;
    const double n = step_ / per_token_;
    return n >= 1 << 20 ? 1 << 20 : std::max(kMinTokens, static_cast<int>(n));
  }

 private:
  // An exponential moving average: recent steps count most (the batch's rows change).
  static double mix(double avg, double x) { return avg <= 0 ? x : 0.8 * avg + 0.2 * x; }
  double per_token_ = 0, step_ = 0;
};

}  // namespace mlxgp
