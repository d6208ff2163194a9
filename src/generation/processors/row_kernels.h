// The CPU fast path of the logits pipeline (LogitsProcessor::row_kernel): one primitive that runs a
// run of row kernels over each row, and the float32 row helpers the warpers share.
#pragma once

#include <span>
#include <vector>

#include <mlx/mlx.h>

#include "mlxgp/logits_processor.h"

namespace mx = mlx::core;

namespace mlxgp::processors {

// True when row kernels may replace device ops: float32 [B, V] logits on the CPU device, and
// MLXGP_DISABLE_KERNELS unset (set it to compare against the device-op path).
bool row_kernels_enabled(const mx::array& logits);

// logits [B, V] float32, ids [B, T] (or a placeholder when no kernel reads ids) -> new logits, the
// kernels applied in order to each row.
mx::array apply_row_kernels(const mx::array& logits, const mx::array& ids, std::vector<RowKernel> kernels);

// Row helpers. Entries at -inf are skipped (after top_k most of the row), so a pass costs one compare
// per token plus one exp per finite token.
// Softmax probabilities (0 for -inf entries; all 0 when every entry is -inf).
void softmax_row(std::span<const float> x, std::vector<float>& probs);
// log-sum-exp of the row (-inf when every entry is -inf).
float logsumexp_row(std::span<const float> x);
// The k-th largest value (k >= 1, k <= size).
float kth_largest(std::span<const float> x, int k, std::vector<float>& scratch);

// The top_p / typical sort-and-cumulate steps (also used by the device-op path's primitive).
void top_p_remove_row(const float* logits, const float* probs, bool* remove, int v, float limit, int keep,
                      std::vector<int>& idx);
void typical_remove_row(const float* shifted, const float* probs, bool* remove, int v, float mass, int keep,
                        std::vector<int>& idx);

}  // namespace mlxgp::processors
