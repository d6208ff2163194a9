// Helpers for the tests of the custom CPU kernels against MLX's own ops.
#pragma once

#include <gtest/gtest.h>

#include <mlx/mlx.h>

#include "kernels/kernels.h"

namespace mlxgp::testing {

// Max |a - b| / (max |b| + tiny), both evaluated.
inline float rel_err(const mlx::core::array& a, const mlx::core::array& b) {
  namespace mx = mlx::core;
  auto d = mx::max(mx::abs(mx::subtract(a, b))).item<float>();
  auto s = mx::max(mx::abs(b)).item<float>();
  return d / (s + 1e-30f);
}

}  // namespace mlxgp::testing

// The kernels exist for x86-64 with AVX2+; elsewhere every entry point is MLX's own op.
#define REQUIRE_KERNELS() \
  if (!mlxgp::kernels::available()) GTEST_SKIP() << "custom CPU kernels need x86-64 AVX2 (or are disabled)"
