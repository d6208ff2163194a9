// One pass over a step's logits on the CPU: each row's argmax and the invalid-logits test, which MLX's ops
// take seven passes (and seven graph nodes per request per step) to compute.
#pragma once

#include <mlx/mlx.h>

namespace mlxgp::kernels {

namespace mx = mlx::core;

struct LogitsScan {
  mx::array argmax;       // int32 [rows]: the first index of each row's largest value, as mx::argmax
  mx::array invalid_row;  // bool [rows]: a NaN, a +inf, or every entry -inf (generation/core/logits_guard.h)
  mx::array invalid;      // bool []: any row invalid
};

// float32 logits of at least one dimension with a non-empty last axis, the CPU as the default device,
// the custom kernels available.
bool logits_scan_supported(const mx::array& logits);
LogitsScan logits_scan(const mx::array& logits);

}  // namespace mlxgp::kernels
