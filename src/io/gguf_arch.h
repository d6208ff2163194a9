// llama.cpp's per-architecture GGUF conventions mapped onto transformers': architecture names, block
// tensor names, and the settings llama.cpp's runtime fixes per architecture instead of storing them.
#pragma once

#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <mlx/mlx.h>

#include "io/gguf_meta.h"
#include "mlxgp/model_config.h"

namespace mlxgp::io {

struct GgufArch {
  std::string gguf;        // general.architecture, also the prefix of its metadata keys
  std::string model_type;  // transformers' model_type
  // Block tensors (blk.N.<name>) named unlike llama's, -> their module under model.layers.N.
  std::vector<std::pair<std::string, std::string>> block_names;
};

// The architecture named `gguf`; throws [model] naming it and the supported ones when unknown.
const GgufArch& gguf_arch(const std::string& gguf);

// The architecture loaded as transformers' `model_type`; throws [model] when none is.
const GgufArch& gguf_arch_of(const std::string& model_type);

// The HF module of block tensor `part` ("attn_q", "ffn_gate_exps"); "" for tensors the models do not use.
std::string gguf_block_module(const GgufArch& arch, const std::string& part);

// The architecture's own fields of `c` (experts, activation, biases, positions, attention scale, soft-capping,
// sliding layers), from its metadata and the tensors present; throws [gguf] naming what mlxgp cannot honour.
void gguf_arch_config(const GgufArch& arch, const GgufMeta& meta,
                      const std::unordered_map<std::string, mlx::core::array>& tensors, ModelConfig& c);

}  // namespace mlxgp::io
