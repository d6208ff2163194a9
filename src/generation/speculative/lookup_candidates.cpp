// Prompt-lookup candidates (transformers PromptLookupCandidateGenerator): no model, no distribution.
#include "generation/speculative/candidates.h"
#include "generation/speculative/prompt_lookup.h"

namespace mx = mlx::core;

namespace mlxgp::speculative {

namespace {

class LookupCandidates : public CandidateGenerator {
 public:
  LookupCandidates(int num_tokens, int max_ngram, std::vector<int> eos)
      : num_tokens_(num_tokens), max_ngram_(max_ngram), eos_(std::move(eos)) {}

  void start(const std::vector<int>&) override {}

  Proposal propose(const std::vector<int>& ids, int k) override {
    auto found = prompt_lookup_candidates(ids, max_ngram_, num_tokens_, eos_);
    if (static_cast<int>(found.size()) > k) found.resize(k);
    Proposal p;
    for (int t : found) p.tokens.push_back(mx::array(&t, {1}, mx::int32));
    return p;
  }

  void update(const int32_t*, int, int, int) override {}

 private:
  int num_tokens_, max_ngram_;
  std::vector<int> eos_;
};

}  // namespace

std::unique_ptr<CandidateGenerator> make_lookup_candidates(const GenerationConfig& config, std::vector<int> eos) {
  return std::make_unique<LookupCandidates>(config.prompt_lookup_num_tokens.value_or(0),
                                            config.max_matching_ngram_size.value_or(2), std::move(eos));
}

}  // namespace mlxgp::speculative
