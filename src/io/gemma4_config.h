// Gemma4TextConfig (transformers 5.24, configuration_gemma4.py) as parse_model_config reads it: the class's
// defaults for what config.json leaves out, and its per-layer widths.
#pragma once

#include <nlohmann/json.hpp>

#include "mlxgp/model_config.h"

namespace mlxgp::io {

// Before the common fields are read: layer_types (the class's five sliding layers to one full one, the last
// forced full as its __post_init__ does), rope_parameters (sliding: default base 1e4; full: proportional, a
// quarter of each head, base 1e6) and the other class defaults. Throws [config] naming what mlxgp does not
// run: per-layer input embeddings (hidden_size_per_layer_input > 0, Gemma 4 E2B / E4B), layers sharing keys
// and values (num_kv_shared_layers > 0), bidirectional attention over every token.
nlohmann::json gemma4_common_fields(const nlohmann::json& config);

// After them: per_layer_config (or global_head_dim / num_global_key_value_heads, as the class derives it) into
// layer_head_dims / layer_kv_heads, attention_k_eq_v, the softcap and the experts (enable_moe_block).
void read_gemma4_fields(const nlohmann::json& config, ModelConfig& c);

}  // namespace mlxgp::io
