// Loading a checkpoint: HF folder (config.json + safetensors), MLX quantized folder, or GGUF file.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <mlx/dtype.h>

#include "mlxgp/model.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp {

struct LoadOptions {
  // Compute/weight dtype. nullopt keeps the checkpoint's own choice (quantized weights stay
  // quantized). A float dtype dequantizes quantized weights to it, so a parity run is fp32 end to end.
  std::optional<mlx::core::Dtype> dtype;
  // llama.cpp's arithmetic for a GGUF's Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / IQ4_NL / Q4_K / Q5_K / Q6_K / IQ4_XS
  // tensors: activations quantized to 8 bits per 32 values and integer dot products (AVX-512 VNNI), as llama.cpp's CPU
  // backend computes. Faster (batches most), but logits follow llama.cpp rather than transformers; other tensors are
  // unaffected. Refused
  // ([load]) for folders, with dtype, off the CPU, or on a CPU without AVX-512 VNNI.
  bool int8_activations = false;
};

// "float32" | "bfloat16" | "float16" -> dtype; throws [load] otherwise.
mlx::core::Dtype parse_dtype(const std::string& name);

struct LoadedModel {
  std::shared_ptr<Model> model;
  std::shared_ptr<Tokenizer> tokenizer;  // null when the folder has no tokenizer files
  std::string generation_config_json;    // generation_config.json text, empty if absent
  std::string source;                    // resolved path
};

// `path` may be "default". Throws [load]/[config]/[safetensors]/[gguf]/[model] errors.
LoadedModel load(const std::string& path, const LoadOptions& options = {});

// Only the tokenizer of a model (folder with tokenizer.json, or GGUF metadata), without building the
// model. `path` may be "default". Throws [load]/[gguf]/[tokenizer].
std::shared_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace mlxgp
