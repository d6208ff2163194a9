// GGUF -> (ModelConfig, HF-named weights): llama.cpp's metadata keys and tensor names mapped back
// to transformers' conventions, as transformers' own GGUF loading does.
#pragma once

#include <mlx/io.h>

#include "mlxgp/model.h"
#include "mlxgp/model_config.h"

namespace mx = mlx::core;

namespace mlxgp::io {

// Name under which a GGUF `rope_freqs.weight` (llama.cpp's per-frequency rope divisors) is kept.
inline constexpr const char* kRopeFreqFactors = "model.rope_freq_factors";

// Config from `<arch>.*` metadata (io/gguf_arch.h: the architectures and what llama.cpp fixes for each);
// throws [gguf] on missing or unsupported keys, [model] on an unknown architecture.
ModelConfig gguf_config(const std::unordered_map<std::string, mx::GGUFMetaData>& meta,
                        const std::unordered_map<std::string, mx::array>& tensors);

// Renames tensors to HF names (experts stay stacked, as switch_mlp) and undoes what the converter did to
// them: the Q/K row permutation (llama, mistral), gemma's 1 + w norm weights.
WeightMap gguf_weights(const ModelConfig& config, std::unordered_map<std::string, mx::array> tensors);

}  // namespace mlxgp::io
