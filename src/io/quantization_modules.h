// The per-module entries of an MLX folder's "quantization" (config.json): mlx-lm's convert records there,
// beside the top level's group_size / bits / mode, each module its quant_predicate gave parameters of its
// own ("model.layers.0.mlp.gate": {"group_size": 64, "bits": 8}), and its load_model quantizes that module
// with them.
#pragma once

#include <map>
#include <string>
#include <utility>

namespace mlxgp::io {

// Module path (the checkpoint's names) -> (group_size, bits), fields an entry leaves out taken from the top
// level; empty without "quantization". Throws [config] naming a module whose mode is not affine or whose
// bits / group size mlxgp does not load.
std::map<std::string, std::pair<int, int>> quantization_modules(const std::string& config_json);

}  // namespace mlxgp::io
