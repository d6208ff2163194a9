// Converting an HF checkpoint folder into an MLX folder (mlx-lm `convert` layout): config.json (with
// "quantization" when quantized), model.safetensors, and the tokenizer / generation files copied.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <mlx/dtype.h>

namespace mlxgp {

struct ConvertOptions {
  bool quantize = false;
  // MLX's quantization mode (mlx-lm convert's --q-mode): "affine", "mxfp4", "mxfp8" or "nvfp4" (QuantizationConfig).
  std::string mode = "affine";
  // Unset: the mode's (mlx-lm's defaults_for_mode: affine 64 / 4, mxfp4 32 / 4, mxfp8 32 / 8, nvfp4 16 / 4).
  std::optional<int> group_size, bits;
  std::optional<mlx::core::Dtype> dtype;  // cast float weights first (default: the checkpoint's dtype)
};

struct ConvertResult {
  std::string out_dir;
  int tensors = 0;            // tensors written
  int quantized_tensors = 0;  // weights stored as (weight, scales[, biases])
  std::vector<std::string> copied_files;
};

// Reads `hf_dir` (config.json + safetensors) and writes `out_dir`, which must not exist or be empty.
// Throws [convert] (bad options, existing output, GGUF input), [load]/[config] for the input.
ConvertResult convert_to_mlx(const std::string& hf_dir, const std::string& out_dir, const ConvertOptions& options = {});

}  // namespace mlxgp
