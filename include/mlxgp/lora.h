// LoRA adapters (Hu et al. 2021, peft's layout and initialisation): y = W x + (alpha / r) * B A x,
// A [r, in] kaiming-uniform, B [out, r] zeros, so training starts from the base model exactly.
#pragma once

#include <string>
#include <vector>

#include "mlxgp/model.h"

namespace mlxgp {

struct LoraConfig {
  int rank = 8;
  double alpha = 16.0;
  double dropout = 0.0;
  // Linear layers whose name ends with one of these (peft target_modules).
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
  uint64_t seed = 0;
};

// Adds adapters to every matching linear; returns the names of the trainable tensors
// (`<prefix>.lora_A.weight`, `<prefix>.lora_B.weight`). Throws [lora] on a bad config, no match, or
// adapters already present.
std::vector<std::string> add_lora(Model& model, const LoraConfig& config);
// Names of the adapter tensors present in the model (A and B, not the scales).
std::vector<std::string> lora_parameter_names(Model& model);
// W += scale * B A for every adapter, then removes the adapters. Throws [lora] for quantized weights.
void merge_lora(Model& model);
// Adapter tensors (A, B and scales) to a safetensors file, atomically, with the config as metadata;
// and back (the model must not have adapters yet).
void save_lora(Model& model, const std::string& path, const LoraConfig& config);
LoraConfig load_lora(Model& model, const std::string& path);

}  // namespace mlxgp
