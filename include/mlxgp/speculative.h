// Speculative decoding (a draft model, or the target's first N layers) and prompt-lookup decoding
// (candidates copied from the prompt, transformers PromptLookupCandidateGenerator). Both verify the
// candidates with one target forward and roll the KV caches back on rejection.
#pragma once

#include <memory>
#include <vector>

#include "mlxgp/generate.h"

namespace mlxgp {

// Runs speculative (config.use_speculative) or prompt-lookup (config.prompt_lookup_num_tokens)
// decoding: one sequence, streamed through `callback`, with result.stats.speculative filled in.
// `draft` is the draft model for config.draft_model (null: load config.draft_model here, or build the
// self-speculative draft from config.draft_layers).
GenerationResult speculative_generate(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                      const std::vector<int>& prompt_ids, const GenerationConfig& config,
                                      const TokenCallback& callback = {}, GeneratorOptions options = {},
                                      std::shared_ptr<Model> draft = nullptr);

}  // namespace mlxgp
