// Which drafted candidates the target accepts, computed on the device (one host sync per round).
#pragma once

#include <mlx/array.h>

namespace mlxgp::speculative {

namespace mx = mlx::core;

struct Verdict {
  mx::array accepted;  // int32 scalar: how many leading candidates are kept
  mx::array tokens;    // int32 [k + 1]: tokens[i] is the token produced after i accepted candidates
};

// Token matching (greedy, mlx-lm's exact-match rule, and transformers' rule for candidates without
// draft probabilities, i.e. prompt lookup): the target chose `target_tokens` [k + 1] at each position
// (argmax, or a sample of its processed distribution); candidates [k] are kept while they equal it, and
// the target's own token follows. With sampling this is still exact: a candidate survives with the
// target's probability of it, and a rejected position emits the target's draw.
Verdict match_candidates(const mx::array& candidates, const mx::array& target_tokens);

// Speculative sampling (Leviathan et al. 2023, algorithm 1; transformers _speculative_sampling): with
// p the target's and q the draft's processed distributions (scores [k + 1, V] and [k, V], softmaxed here),
// candidate i is accepted with probability min(1, p_i(c_i) / q_i(c_i)) while all before it were; the
// first rejected position i resamples from normalise(max(0, p_i - q_i)), and when all k are accepted a
// bonus token is drawn from p_k. The emitted tokens are then distributed exactly as the target's.
Verdict rejection_sample(const mx::array& candidates, const mx::array& target_scores, const mx::array& draft_scores,
                         const mx::array& key);

}  // namespace mlxgp::speculative
