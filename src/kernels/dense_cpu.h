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

// All of out for any M (dense_gemm.cpp): x transposed into panels, W rows through the tile products.
// Threads itself; meant for more rows than kLinearMaxRows.
void dense_gemm(const DenseArgs& a, Isa isa);

}  // namespace mlxgp::kernels
