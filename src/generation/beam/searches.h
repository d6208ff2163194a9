// The beam search variants behind beam_search() (beam_search.h), as step-wise searches
// (search_state.h), and the driver that batches several prompts' searches.
#pragma once

#include <memory>
#include <vector>

#include "mlxgp/generate.h"

namespace mlxgp::beam {

class BeamSearchState;

// transformers 4.56 _group_beam_search with BeamSearchScorer (num_beam_groups > 1, diversity_penalty).
std::unique_ptr<BeamSearchState> make_group_beams(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                                  const GenerationConfig& config, const GeneratorOptions& options);

// transformers 4.56 _constrained_beam_search with ConstrainedBeamSearchScorer (force_words_ids).
std::unique_ptr<BeamSearchState> make_constrained_beams(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                                        const GenerationConfig& config,
                                                        const GeneratorOptions& options);

// Beam searches of several prompts (one config each, resolved and validated, any variant, KV caches of
// one kind) sharing one batch: each gives what it gives alone.
std::vector<GenerationResult> batched_beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                                  const std::vector<std::vector<int>>& prompts,
                                                  const std::vector<GenerationConfig>& configs,
                                                  const GeneratorOptions& options);

}  // namespace mlxgp::beam
