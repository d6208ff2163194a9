// transformers 4.x BeamHypotheses: the finished hypotheses of one beam scorer (group beam search and
// constrained beam search keep the legacy scorer semantics of the last release that ships them,
// transformers 4.56). Scores are Python floats (double) there; kept in double here.
#pragma once

#include <vector>

#include "generation/beam/beam_common.h"

namespace mlxgp::beam {

class LegacyHypotheses {
 public:
  struct Entry {
    double score;
    Hypothesis hyp;
  };
  LegacyHypotheses(int num_beams, double length_penalty, EarlyStopping early, int budget)
      : num_beams_(num_beams), length_penalty_(length_penalty), early_(early), budget_(budget) {}
  int size() const { return static_cast<int>(beams_.size()); }
  // BeamHypotheses.add: score = sum_logprobs / generated_len^length_penalty; kept when the list is not
  // full or it beats the worst (which is then dropped, the earliest of equal worst ones first).
  void add(Hypothesis hyp, double sum_logprobs, int generated_len);
  // BeamHypotheses.is_done for the best running sum of log-probs at generated length `generated`.
  bool is_done(double best_sum_logprobs, int generated) const;
  const std::vector<Entry>& entries() const { return beams_; }

 private:
  int num_beams_;
  double length_penalty_;
  EarlyStopping early_;
  int budget_;  // max_length - prompt length ("never" with a positive length penalty)
  std::vector<Entry> beams_;
  double worst_ = 1e9;
};

// BeamSearchScorer.finalize's choice: all entries sorted by score ascending (stable), best taken
// from the end; returns the best `n` (an equal score: the later entry first).
std::vector<Hypothesis> best_of(const std::vector<LegacyHypotheses::Entry>& entries, int n);

}  // namespace mlxgp::beam
