// The beam search variants behind beam_search() (beam_search.h).
#pragma once

#include <memory>
#include <vector>

#include "mlxgp/generate.h"

namespace mlxgp::beam {

// transformers 5.x GenerationMixin._beam_search (vectorized): beam search, and beam sampling when
// do_sample. `config` resolved and validated.
GenerationResult standard_beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                      const std::vector<int>& prompt_ids, const GenerationConfig& config,
                                      const GeneratorOptions& options);

// transformers 4.56 _group_beam_search with BeamSearchScorer (num_beam_groups > 1, diversity_penalty).
GenerationResult group_beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                   const std::vector<int>& prompt_ids, const GenerationConfig& config,
                                   const GeneratorOptions& options);

// transformers 4.56 _constrained_beam_search with ConstrainedBeamSearchScorer (force_words_ids).
GenerationResult constrained_beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                         const std::vector<int>& prompt_ids, const GenerationConfig& config,
                                         const GeneratorOptions& options);

// Standard beam searches of several prompts (one config each, all resolved and validated, with KV
// caches of one kind) sharing one batch: each gives what standard_beam_search gives it alone.
std::vector<GenerationResult> batched_beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                                  const std::vector<std::vector<int>>& prompts,
                                                  const std::vector<GenerationConfig>& configs,
                                                  const GeneratorOptions& options);

}  // namespace mlxgp::beam
