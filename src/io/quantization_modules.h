// The per-module entries of an MLX folder's "quantization" (config.json): mlx-lm's convert records there,
// beside the top level's group_size / bits / mode, each module its quant_predicate gave parameters of its
// own ("model.layers.0.mlp.gate": {"group_size": 64, "bits": 8}), and its load_model quantizes that module
// with them.
#pragma once

#include <map>
#include <string>

#include "mlxgp/model_config.h"

namespace mlxgp::io {

// Module path (the checkpoint's names) -> its quantization, fields an entry leaves out being to_quantized's
// defaults (mode affine, the mode's group size and bits) as in mlx-lm; empty without "quantization". Throws
// [config] naming a module whose mode, bits or group size mlxgp does not load.
std::map<std::string, QuantizationConfig> quantization_modules(const std::string& config_json);

}  // namespace mlxgp::io
