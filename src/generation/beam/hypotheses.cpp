// LegacyHypotheses: transformers 4.x BeamHypotheses (add / is_done) and the finalize ordering.
#include "generation/beam/hypotheses.h"

#include <algorithm>
#include <cmath>

namespace mlxgp::beam {

void LegacyHypotheses::add(Hypothesis hyp, double sum_logprobs, int generated_len) {
  const double score = sum_logprobs / std::pow(static_cast<double>(generated_len), length_penalty_);
  if (size() < num_beams_ || score > worst_) {
    hyp.score = static_cast<float>(score);
    beams_.push_back({score, std::move(hyp)});
    if (size() > num_beams_) {
      // sorted((s, idx)): the lowest score goes, the earliest index first among equal scores.
      std::vector<std::pair<double, int>> sorted;
      for (int i = 0; i < size(); ++i) sorted.push_back({beams_[i].score, i});
      std::sort(sorted.begin(), sorted.end());
      beams_.erase(beams_.begin() + sorted[0].second);
      worst_ = sorted[1].first;
    } else {
      worst_ = std::min(score, worst_);
    }
  }
}

bool LegacyHypotheses::is_done(double best_sum_logprobs, int generated) const {
  if (size() < num_beams_) return false;
  if (early_ == EarlyStopping::True) return true;
  const int len = (early_ == EarlyStopping::Never && length_penalty_ > 0.0) ? budget_ : generated;
  return worst_ >= best_sum_logprobs / std::pow(static_cast<double>(len), length_penalty_);
}

std::vector<Hypothesis> best_of(const std::vector<LegacyHypotheses::Entry>& entries, int n) {
  std::vector<int> order(entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return entries[a].score < entries[b].score; });
  std::vector<Hypothesis> out;
  for (int j = 0; j < n && !order.empty(); ++j) {
    out.push_back(entries[order.back()].hyp);
    order.pop_back();
  }
  return out;
}

}  // namespace mlxgp::beam
