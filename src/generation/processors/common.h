// Small device-side helpers shared by the logits processors.
#pragma once

#include <limits>
#include <vector>

#include <mlx/mlx.h>

#include "mlxgp/logits_processor.h"

namespace mx = mlx::core;

namespace mlxgp::processors {

inline mx::array neg_inf() { return mx::array(-std::numeric_limits<float>::infinity()); }

// [V] bool mask of the vocabulary entries listed in `tokens` (ids outside [0, V) are ignored, as
// torch.isin(arange(V), tokens) ignores them).
inline mx::array vocab_mask(int vocab, const std::vector<int>& tokens) {
  if (tokens.empty()) return mx::zeros({vocab}, mx::bool_);
  auto t = mx::array(tokens.data(), {static_cast<int>(tokens.size()), 1}, mx::int32);
  return mx::any(mx::equal(mx::reshape(mx::arange(vocab, mx::int32), {1, vocab}), t), 0);
}

// [B, V] bool mask with True at (b, ids[b, t]) for every t; ids >= V are ignored (they go to an
// extra column that is dropped, like transformers' padded scatter).
inline mx::array ids_mask(const mx::array& ids, int vocab) {
  int b = ids.shape(0);
  auto clamped = mx::minimum(mx::astype(ids, mx::int32), mx::array(vocab, mx::int32));
  auto mask =
      mx::put_along_axis(mx::zeros({b, vocab + 1}, mx::bool_), clamped, mx::ones(clamped.shape(), mx::bool_), -1);
  return mx::slice(mask, {0, 0}, {b, vocab});
}

}  // namespace mlxgp::processors
