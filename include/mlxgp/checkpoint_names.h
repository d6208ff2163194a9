// The names a model's tensors carry in checkpoint files, where they differ from the names the model uses
// (parameters(), LoRA, hooks, sharding): gpt2's decoder names (model.layers.N.self_attn.qkv_proj) back to
// GPT-2's; gpt_oss's stacked switch_mlp experts back to mlx-lm's experts.<proj> or transformers'
// interleaved gate_up_proj; the other MoE models' (mixtral, qwen2_moe, qwen3_moe) to transformers' tensor per
// expert (Hf; mlx-lm keeps them stacked as mlxgp does). Other model types pass through unchanged.
#pragma once

#include <string>

#include "mlxgp/model.h"

namespace mlxgp {

enum class CheckpointLayout {
  Hf,     // what transformers' save_pretrained writes (gpt2: transformer.h.N..., Conv1D weights [in, out])
  MlxLm,  // what mlx-lm's convert writes (gpt2: model.h.N..., every weight [out, in]; gpt_oss: mlp.experts.*)
};

WeightMap to_checkpoint_names(const std::string& model_type, WeightMap weights, CheckpointLayout layout);
// The same for config's model; a multimodal checkpoint's language model (ModelConfig::multimodal_model_type) is
// written under "language_model." in both layouts, as transformers' save_pretrained and mlx-lm's convert do.
WeightMap to_checkpoint_names(const ModelConfig& config, WeightMap weights, CheckpointLayout layout);

}  // namespace mlxgp
