// Beam search family (transformers GenerationMixin._beam_search and the BeamSearchScorer /
// ConstrainedBeamSearchScorer / group beam search of earlier releases): beam search, beam sampling,
// constrained beams (force_words_ids) and diverse group beams.
#pragma once

#include <memory>
#include <vector>

#include "mlxgp/generate.h"

namespace mlxgp {

// Runs beam search for `config` (num_beams > 1). Returns num_return_sequences hypotheses, best first,
// each with its sequence_score and beam_indices. `callback` is not called (beams are not streamed).
// Config defaults missing from `config` are taken from the model (with_model_defaults).
GenerationResult beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                             const std::vector<int>& prompt_ids, const GenerationConfig& config,
                             GeneratorOptions options = {});

}  // namespace mlxgp
