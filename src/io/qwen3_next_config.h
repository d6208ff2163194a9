// Qwen3NextConfig, Qwen3_5TextConfig and Qwen3_5MoeTextConfig (transformers 5.24, configuration_qwen3_next.py /
// configuration_qwen3_5.py / configuration_qwen3_5_moe.py) as parse_model_config reads them.
#pragma once

#include <nlohmann/json.hpp>

#include "mlxgp/model_config.h"

namespace mlxgp::io {

bool is_qwen3_next_type(const std::string& model_type);  // qwen3_next, qwen3_5_text, qwen3_5_moe_text

// Before the common fields are read: the rope's multimodal sections dropped (text positions are equal in all three,
// which makes the interleaved multimodal rotation plain RoPE), partial_rotary_factor's default 0.25 (the classes'
// __post_init__), and qwen3_5_moe_text's missing intermediate_size (no dense layer reads it) set to the experts'.
nlohmann::json qwen3_next_common_fields(const nlohmann::json& config);

// After them: which layers are gated delta nets (layer_types "linear_attention", else every layer but each
// full_attention_interval-th, 4 by default), their head counts and widths and convolution, the gated attention
// output, and the experts (qwen3_next: decoder_sparse_step / mlp_only_layers, norm_topk_prob; qwen3_5_moe_text: every
// layer sparse, always renormalised) with their sigmoid-gated shared expert.
void read_qwen3_next_fields(const nlohmann::json& config, ModelConfig& c);

}  // namespace mlxgp::io
