// Logits no sampler can use: NaN or +inf anywhere, or a row that is -inf everywhere (a NaN weight, a
// float16 overflow, a hook gone wrong). transformers lets them through unless remove_invalid_values
// (greedy then picks an arbitrary id; sampling raises inside torch.multinomial); mlxgp stops the
// generation with a one-line error naming the step, never a silent run of garbage tokens.
// A -inf entry alone is legitimate (a masked token).
#pragma once

#include <mlx/array.h>

#include "mlxgp/generation_config.h"

namespace mlxgp {

// [rows] bool, lazy: which rows of `logits` [rows, V] cannot be sampled from.
mlx::core::array invalid_rows(const mlx::core::array& logits);
// Scalar bool, lazy: whether any row cannot.
mlx::core::array invalid_logits(const mlx::core::array& logits);
// Whether the guard applies: remove_invalid_values asks for the invalid values to be replaced instead.
inline bool guards_logits(const GenerationConfig& config) { return !config.remove_invalid_values; }
// Throws [generate] naming the step (1 = the token after the prompt).
[[noreturn]] void fail_invalid_logits(int step);
// The same for the processed scores a sampled step draws from (invalid_logits of them): a tiny temperature
// overflows them to +inf, where transformers' torch.multinomial raises.
[[noreturn]] void fail_invalid_scores(int step);

}  // namespace mlxgp
