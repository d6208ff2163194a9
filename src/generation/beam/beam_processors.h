// The logits processors as beam search runs them: transformers applies them to log_softmax(logits)
// of every beam with the beams' input_ids. The pipeline is the usual one (pipeline.cpp) minus what the
// beam search does itself (force_words_ids: constrained beam search), with the warpers keeping
// len(eos) + 1 tokens as HF does inside beams. Every processor reads its state from the ids, so
// reordering the beams' ids is all it takes to follow them; classifier-free guidance is the exception,
// as in transformers (UnbatchedClassifierFreeGuidanceLogitsProcessor): its unconditional cache is fed
// each row's last token and never reordered.
#pragma once

#include <optional>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/generate.h"
#include "mlxgp/logits_processor.h"

namespace mlxgp::beam {

namespace mx = mlx::core;

class BeamProcessors {
 public:
  // `config` resolved (eos known). Throws [generate] for guidance_scale with num_beam_groups > 1.
  BeamProcessors(Model& model, const GenerationConfig& config, const GeneratorOptions& options);
  // Called once with the prompt tiled to the beams [R, n].
  void on_prompt(const mx::array& rows);
  // Called with each running row's new last token (in the new row order) before the next forward.
  void on_step(const std::vector<int>& tokens);
  bool needs_ids() const { return pre_.needs_ids() || rest_.needs_ids(); }
  // Processed scores of some beams (a group's, or all) given their ids. `diversity` [V] is subtracted
  // where transformers 4.x placed HammingDiversityLogitsProcessor (right after sequence_bias).
  mx::array apply(const mx::array& scores, const mx::array& ids,
                  const std::optional<mx::array>& diversity = std::nullopt);
  // Throws [generate] when a searched group's best candidate is NaN, or -inf (every continuation masked)
  // while the group has no finished hypothesis (transformers would carry -inf beams to the end and return
  // them): a constraint's own reason first (LogitsProcessor::raise_pending).
  void check_candidates(float best, bool have_hypotheses);

 private:
  LogitsProcessorList pre_, rest_;  // guidance, sequence_bias | everything after them
  bool guided_ = false;
};

}  // namespace mlxgp::beam
