// Prompt-lookup candidates (transformers PromptLookupCandidateGenerator.get_candidates): the tokens
// that followed an earlier occurrence of the sequence's last n-gram.
#pragma once

#include <vector>

namespace mlxgp::speculative {

// `ids`: prompt + generated tokens so far. Tries n-gram sizes from min(max_ngram, len - 1) down to 1;
// for each, the earliest occurrence (left to right) of the last n tokens that is followed by at least
// one token gives up to `num_tokens` candidates (never reading past the end of `ids`). Candidates are cut
// at the first EOS id, as transformers does (otherwise an accepted EOS could be followed by more
// accepted tokens). Empty when nothing matches: the step is then a plain target step.
// (transformers also drops candidates its logits processors forbid, using fake logits; that only
// changes which candidates are proposed, never the output, and is not done here.)
std::vector<int> prompt_lookup_candidates(const std::vector<int>& ids, int max_ngram, int num_tokens,
                                          const std::vector<int>& eos);

}  // namespace mlxgp::speculative
