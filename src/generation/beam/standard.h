// Standard beam search (and beam sampling) as a step-wise state machine, so one loop can drive one
// prompt (standard_beam_search) or several prompts sharing a batch (batched_beam_search).
#pragma once

#include <memory>
#include <vector>

#include <mlx/array.h>

#include "generation/beam/beam_common.h"
#include "generation/beam/beam_processors.h"
#include "generation/core/sampler.h"

namespace mlxgp::beam {

class StandardBeams {
 public:
  // `config` resolved and validated.
  StandardBeams(Model& model, std::shared_ptr<const Tokenizer> tokenizer, const GenerationConfig& config,
                const GeneratorOptions& options);
  // Prefills the prompt tiled to num_beams rows (the runner's caches); returns the first logits [nb, V].
  mx::array prefill(const std::vector<int>& prompt_ids);
  // One step from this prompt's logits [nb, V]. False when the search is over; otherwise the caches'
  // rows must be reordered to src_rows() and new_tokens() fed to get the next logits.
  bool step(const mx::array& logits);
  const std::vector<int>& src_rows() const { return src_rows_; }
  const std::vector<int>& new_tokens() const { return new_tokens_; }
  int num_beams() const { return nb_; }
  BeamRunner& runner() { return runner_; }
  // The best num_return_sequences hypotheses (call once, after step() returned false).
  GenerationResult result();

 private:
  GenerationConfig config_;
  int nb_, k_;
  double lp_;
  EarlyStopping early_;
  BeamRunner runner_;
  BeamProcessors procs_;
  Sampler sampler_;
  std::vector<Beam> running_;
  std::vector<Hypothesis> finished_;
  std::vector<bool> is_finished_;
  bool improvable_ = true;  // HF is_early_stop_heuristic_unsatisfied
  int t_ = 0;               // steps taken
  std::vector<int> src_rows_, new_tokens_;
};

}  // namespace mlxgp::beam
