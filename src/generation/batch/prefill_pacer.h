// How many prompt tokens a joining request may prefill in one step while rows decode
// (BatchEngineOptions::prefill_step_tokens < 0): a budget steered so that a step's prefill takes about as
// long as a decode step, so a running stream's gap between two tokens stays near two steps whatever the
// device (a CPU prefills tens of tokens in a step's time, a GPU thousands).
#pragma once

#include <algorithm>

namespace mlxgp {

class PrefillPacer {
 public:
  // The fewest tokens a step prefills (a prompt always makes progress), and the budget to start from.
  static constexpr int kMinTokens = 16;
  static constexpr int kMaxTokens = 1 << 20;

  // A prefill of `tokens` tokens took `seconds` (its part evaluated). Only a part the size of the budget
  // steers it (a prompt's last part is shorter): the budget scales by decode step / part time, at most
  // twofold either way per part. A part's time is not proportional to its tokens (a fixed cost per forward
  // dominates small parts on a GPU), so steering by the measured ratio, not a per-token cost, lets it grow
  // to the size a step's time allows.
  void prefilled(int tokens, double seconds) {
    if (tokens != budget_ || seconds <= 0 || step_ <= 0) return;
    const double scaled = budget_ * std::clamp(step_ / seconds, 0.5, 2.0);
    budget_ = static_cast<int>(std::clamp(scaled, static_cast<double>(kMinTokens), static_cast<double>(kMaxTokens)));
  }
  // A decode step with no prefill in it took `seconds`.
  void decoded(double seconds) {
    if (seconds > 0) step_ = step_ <= 0 ? seconds : 0.8 * step_ + 0.2 * seconds;  // recent steps count most
  }
  // This step's budget.
  int budget() const { return budget_; }

 private:
  int budget_ = kMinTokens;
  double step_ = 0;
};

}  // namespace mlxgp
