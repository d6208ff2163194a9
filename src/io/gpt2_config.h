// GPT2Config's and GPTBigCodeConfig's own field names (n_embd, n_layer, n_head, n_positions, n_inner,
// layer_norm_epsilon, activation_function; transformers maps the common names onto them) -> the common names
// parse_model_config reads, with the class's defaults (model_type "gpt2" or "gpt_bigcode").
#pragma once

#include <nlohmann/json.hpp>

namespace mlxgp::io {

// Throws [config] naming an option that changes the math and that mlxgp does not implement.
nlohmann::json gpt2_common_fields(const nlohmann::json& config);  // config's model_type picks the class

}  // namespace mlxgp::io
