// The sort-and-cumulate step of transformers' TopPLogitsWarper and TypicalLogitsWarper as one CPU
// primitive. Both warpers sort the whole vocabulary, but every token already at -inf (after top_k,
// bad words, ...) lands at a fixed end of the order with probability 0, so only the finite candidates
// need sorting. With top_k = 50 that turns a 49k-element argsort per step into a 50-element one.
#pragma once

#include <optional>

#include <mlx/mlx.h>

namespace mlxgp::processors {

namespace mx = mlx::core;

// True when the primitives below can run: float32 [B, V] inputs on the CPU device.
bool mass_cutoff_on_cpu(const mx::array& logits);

// HF TopPLogitsWarper's removal mask [B, V] (true = set to -inf): ascending by logit (ties in index
// order, as MLX's stable argsort), float32 running sum of `probs`; a token goes when the running sum up
// to it is <= 1 - top_p, except the last min_keep positions.
mx::array top_p_remove_mask(const mx::array& logits, const mx::array& probs, float one_minus_p, int min_keep);

// HF TypicalLogitsWarper's removal mask: ascending by `shifted` (|-log p - H|), running sum of `probs`;
// last = count(sum < mass) clamped to V - 1; remove shifted > shifted_sorted[last], except the first
// min_keep positions.
mx::array typical_remove_mask(const mx::array& shifted, const mx::array& probs, float mass, int min_keep);

}  // namespace mlxgp::processors
