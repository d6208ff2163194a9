// layer_types as a hybrid model's config.json lists them (Lfm2Config, Qwen3NextConfig, Qwen3_5TextConfig).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlxgp::io {

// One flag per layer: true where the entry is `recurrent` ("conv", "linear_attention"), false where it is
// "full_attention". A list of another length or another entry throws [config] naming `model_type`'s two kinds.
std::vector<bool> recurrent_layer_flags(const nlohmann::json& types, int layers, const std::string& model_type,
                                        const std::string& recurrent);

}  // namespace mlxgp::io
