// Prefill-shaped float32 attention on the CPU (prefill_attention.cpp) and the blocked route it replaced
// (attention.cpp), which stays as its gradient and as the fallback when D is not a multiple of 8.
// Shapes and masks as kernels::attention (kernels.h).
#pragma once

#include <vector>

#include <mlx/mlx.h>

namespace mlxgp::kernels {

bool prefill_attention_supported(const mlx::core::array& q, const mlx::core::array& k, const mlx::core::array& v);
mlx::core::array prefill_attention(const mlx::core::array& q, const mlx::core::array& k, const mlx::core::array& v,
                                   float scale, bool causal, const std::vector<int>& key_start);

// BLAS products around a vectorised masked softmax, in query blocks.
mlx::core::array blocked_attention(const mlx::core::array& q, const mlx::core::array& k, const mlx::core::array& v,
                                   float scale, bool causal, const std::vector<int>& key_start);

}  // namespace mlxgp::kernels
