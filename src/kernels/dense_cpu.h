// Row kernels for out[m, n] = sum_k x[m, k] * w[n, k] with float32 row-major x [M, K] and
// w [N, K] (an nn.Linear weight): the decode-time "x @ W^T" as a streaming dot product per row.
#pragma once

#include "kernels/qmm_cpu.h"

namespace mlxgp::kernels {

struct DenseArgs {
  const float* x = nullptr;
  const float* w = nullptr;
  float* out = nullptr;
  int M = 0, N = 0, K = 0;
};

void dense_rows(const DenseArgs& a, int n0, int n1, Isa isa);

}  // namespace mlxgp::kernels
