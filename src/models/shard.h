// Tensor-parallel sharding of a decoder's weights (shard_model in mlxgp/distributed.h): which rows or
// columns of each projection a rank keeps, and the head counts / widths its layers are built with.
#pragma once

#include "mlxgp/model.h"
#include "mlxgp/model_config.h"

namespace mlxgp::shard {

// A half-open range of units (heads or features) [begin, end).
struct Range {
  int begin = 0, end = 0;
  int size() const { return end - begin; }
};

struct Plan {
  int rank = 0, size = 1;
  Range q_heads, kv_heads;  // attention heads, whole key/value groups with their query heads
  Range inter;              // dense MLP features (intermediate_size)
  Range moe_inter;          // each expert's features (moe_intermediate_size; mixtral: intermediate_size)
  Range shared_inter;       // qwen2_moe's shared expert (shared_expert_intermediate_size)
};

// `n` units over `size` ranks as evenly as `granule`-sized pieces allow; rank's share.
Range split(int n, int rank, int size, int granule = 1);

// Throws [distributed] when the model cannot be split over `size` ranks (fewer KV heads than ranks).
// `w`: the model's (stacked) weights, for the quantization granule of the column-split projections.
Plan make_plan(const ModelConfig& c, const WeightMap& w, int rank, int size, bool mixtral_names);

// The config a rank's layers are built from: its own head counts and widths.
ModelConfig local_config(const ModelConfig& c, const Plan& p, bool mixtral_names);

// This rank's slice of every sharded tensor (contiguous copies); the others pass through.
WeightMap slice_weights(const WeightMap& w, const ModelConfig& c, const Plan& p, bool mixtral_names);

}  // namespace mlxgp::shard
