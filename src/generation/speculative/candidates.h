// Where a speculative round gets its candidates, behind one interface as in transformers'
// candidate_generator.py (AssistedCandidateGenerator, PromptLookupCandidateGenerator): a draft model
// (a checkpoint or the target's first layers) or n-gram lookup in the tokens so far.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/cache_options.h"
#include "mlxgp/generate.h"

namespace mlxgp::speculative {

namespace mx = mlx::core;

struct Proposal {
  std::vector<mx::array> tokens;  // each [1] int32 (lazy for a draft model)
  // The draft's processed scores [1, V] for each token: what rejection sampling compares the target
  // against. Empty for generators without a distribution (prompt lookup).
  std::vector<mx::array> scores;
};

class CandidateGenerator {
 public:
  virtual ~CandidateGenerator() = default;
  // The prompt; the target prefills prompt[:-1] alongside (its last token leads the first round).
  virtual void start(const std::vector<int>& prompt) = 0;
  // At most `k` candidates that continue `ids` (prompt + produced tokens).
  virtual Proposal propose(const std::vector<int>& ids, int k) = 0;
  // After verification: of the `proposed` candidates (host ids), `accepted` were kept, then the target
  // produced `final_token`.
  virtual void update(const int32_t* candidates, int proposed, int accepted, int final_token) = 0;
};

// A draft model proposing up to config.num_draft_tokens tokens per round with the config's processors;
// `choose(scores [1, V]) -> token [1]` is the run's sampler (one RNG for draft and target, as mlx-lm).
std::unique_ptr<CandidateGenerator> make_draft_candidates(std::shared_ptr<Model> draft, const GenerationConfig& config,
                                                          const GeneratorOptions& options,
                                                          std::function<mx::array(const mx::array&)> choose);

// Prompt lookup: up to config.prompt_lookup_num_tokens tokens that followed an earlier occurrence of the
// last n-gram (n <= max_matching_ngram_size, default 2), cut at the first of `eos`.
std::unique_ptr<CandidateGenerator> make_lookup_candidates(const GenerationConfig& config, std::vector<int> eos);

// The processor context speculative runs build their pipelines with (no model-bound processors).
ProcessorContext speculative_context(const GeneratorOptions& options);

// Drops the last n positions of every cache; throws [generate] naming `which` model when one cannot.
void rollback(KVCacheList& caches, int n, const char* which);

}  // namespace mlxgp::speculative
