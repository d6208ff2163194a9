// The beam search variants as step-wise state machines, so one loop drives one prompt (beam_search())
// or several prompts sharing a batch (BeamBatch): each step takes the search's logits
// [num_beams, V], and tells which cache rows to keep (in order) and which tokens to feed next.
#pragma once

#include <memory>
#include <vector>

#include <mlx/array.h>

#include "generation/beam/beam_common.h"
#include "generation/beam/beam_processors.h"
#include "generation/core/sampler.h"

namespace mx = mlx::core;

namespace mlxgp::beam {

class BeamSearchState {
 public:
  BeamSearchState(Model& model, std::shared_ptr<const Tokenizer> tokenizer, const GenerationConfig& config,
                  const GeneratorOptions& options)
      : runner_(model, std::move(tokenizer), config, options) {}
  virtual ~BeamSearchState() = default;
  // Prefills the prompt tiled to num_beams rows (the runner's caches); returns the first logits [nb, V].
  virtual mx::array prefill(const std::vector<int>& prompt_ids) = 0;
  // One step from this search's logits [nb, V]. False when the search is over; otherwise the caches'
  // rows must be reordered to src_rows() and new_tokens() fed to get the next logits.
  virtual bool step(const mx::array& logits) = 0;
  // The best num_return_sequences hypotheses (call once, after step() returned false).
  virtual GenerationResult result() = 0;
  virtual int num_beams() const = 0;
  const std::vector<int>& src_rows() const { return src_rows_; }
  const std::vector<int>& new_tokens() const { return new_tokens_; }
  BeamRunner& runner() { return runner_; }

 protected:
  BeamRunner runner_;
  std::vector<int> src_rows_, new_tokens_;
};

// The variant the config asks for (`config` resolved and validated): group beams for num_beam_groups
// > 1, constrained beams for force_words_ids, else standard beam search / beam sampling.
std::unique_ptr<BeamSearchState> make_beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                                  const GenerationConfig& config, const GeneratorOptions& options);
// One prompt, alone: prefill, then step / reorder / forward until the search ends.
GenerationResult run_beam_search(BeamSearchState& search, const std::vector<int>& prompt_ids);

// transformers 5.x GenerationMixin._beam_search (vectorized): beam search, and beam sampling when
// do_sample.
class StandardBeams : public BeamSearchState {
 public:
  StandardBeams(Model& model, std::shared_ptr<const Tokenizer> tokenizer, const GenerationConfig& config,
                const GeneratorOptions& options);
  mx::array prefill(const std::vector<int>& prompt_ids) override;
  bool step(const mx::array& logits) override;
  GenerationResult result() override;
  int num_beams() const override { return nb_; }

 private:
  GenerationConfig config_;
  int nb_, k_;
  double lp_;
  EarlyStopping early_;
  BeamProcessors procs_;
  Sampler sampler_;
  std::vector<Beam> running_;
  std::vector<Hypothesis> finished_;
  std::vector<bool> is_finished_;
  bool improvable_ = true;  // HF is_early_stop_heuristic_unsatisfied
  int t_ = 0;               // steps taken
};

}  // namespace mlxgp::beam
