// Lfm2Config and Lfm2MoeConfig (transformers 5.24, configuration_lfm2.py / configuration_lfm2_moe.py) as
// parse_model_config reads them.
#pragma once

#include <nlohmann/json.hpp>

#include "mlxgp/model_config.h"

namespace mlxgp::io {

// Before the common fields are read: the class's own names for them (norm_eps, block_ff_dim, tie_embedding
// win over the common ones, as its __post_init__ pops them), the MLP width Lfm2MLP builds (block_auto_adjust_ff_dim:
// two thirds, times block_ffn_dim_multiplier, rounded up to block_multiple_of), and what the class does not
// have (every projection unbiased but conv_bias's, silu, no sliding window). lfm2_moe takes its widths as given.
nlohmann::json lfm2_common_fields(const nlohmann::json& config);

// After them: which layers are convolutions (layer_types "conv", else the layers full_attn_idxs leaves out; both
// absent: none), conv_L_cache (class default 3) and conv_bias; lfm2_moe's experts (num_dense_layers dense layers
// first, a sigmoid router with expert_bias).
void read_lfm2_fields(const nlohmann::json& config, ModelConfig& c);

}  // namespace mlxgp::io
