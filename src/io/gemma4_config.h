// Gemma4TextConfig (transformers 5.24, configuration_gemma4.py) as parse_model_config reads it: the class's
// defaults for what config.json leaves out, and its per-layer widths.
#pragma once

#include <nlohmann/json.hpp>

#include "mlxgp/model_config.h"

namespace mlxgp::io {

// Before the common fields are read: rope_parameters' default (sliding: default base 1e4; full: proportional, a
// quarter of each head, base 1e6). Throws [config] for bidirectional attention over every token, which mlxgp
// does not run. (Without layer_types the class's five sliding layers to one full one: parse_sliding_layers.)
nlohmann::json gemma4_common_fields(const nlohmann::json& config);

// After them: the last layer made a full-attention one (the class's __post_init__), per_layer_config (or
// global_head_dim / num_global_key_value_heads, as the class derives it) into layer_head_dims / layer_kv_heads,
// attention_k_eq_v, the softcap, the experts (enable_moe_block), the per-layer inputs (hidden_size_per_layer_input,
// class default 256) and the layers sharing keys and values.
void read_gemma4_fields(const nlohmann::json& config, ModelConfig& c);

}  // namespace mlxgp::io
