// The logits processors as beam search runs them: transformers applies them to log_softmax(logits)
// of every beam with the beams' input_ids; stateful ones must follow the beams when they are
// reordered. The pipeline is built from the config in the usual order (pipeline.cpp), minus what the
// beam search does itself (force_words_ids: constrained beam search), with the OpenAI penalties kept
// as beam-reordered counts, and the warpers keeping len(eos) + 1 tokens as HF does inside beams.
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
  // `config` resolved (eos known). Throws [generate] for guidance_scale (its unconditional cache
  // cannot follow the beams).
  BeamProcessors(Model& model, const GenerationConfig& config, const GeneratorOptions& options);
  // Called once with the prompt tiled to the beams [R, n].
  void on_prompt(const mx::array& rows);
  bool needs_ids() const { return pre_.needs_ids() || head_.needs_ids() || tail_.needs_ids(); }
  // Processed scores of rows [first, first + R) of the beams (R = scores.shape(0)). `diversity` [V]
  // is subtracted where transformers 4.x placed HammingDiversityLogitsProcessor (right after
  // sequence_bias).
  mx::array apply(const mx::array& scores, const mx::array& ids, int first = 0,
                  const std::optional<mx::array>& diversity = std::nullopt);
  // After a step, beam i continues beam src[i] with tokens[i].
  void advance(const std::vector<int>& src, const std::vector<int>& tokens);

 private:
  LogitsProcessorList pre_, head_, tail_;  // sequence_bias | the other HF processors | warpers
  float presence_ = 0, frequency_ = 0;
  int rows_ = 0, vocab_ = 0;
  std::optional<mx::array> counts_;  // [R, V] generated-token counts per beam (OpenAI penalties)
};

}  // namespace mlxgp::beam
