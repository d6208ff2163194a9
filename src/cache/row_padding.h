// Helpers the caches that take left-padded batch rows share (batch_cache.h): zero positions added or
// cut at the front of [B, H, T, ...] arrays.
#pragma once

#include <mlx/mlx.h>

namespace mlxgp {

namespace mx = mlx::core;

// `a` with zero positions prepended on axis 2 until it holds `len` (they are masked out).
inline mx::array pad_front(const mx::array& a, int len) {
  const int extra = len - a.shape(2);
  if (extra <= 0) return a;
  mx::Shape z = a.shape();
  z[2] = extra;
  return mx::concatenate({mx::zeros(z, a.dtype()), a}, 2);
}

// `a` without its first n positions on axis 2.
inline mx::array cut_front(const mx::array& a, int n) {
  mx::Shape start(a.ndim(), 0);
  start[2] = n;
  return mx::slice(a, start, a.shape());
}

}  // namespace mlxgp
