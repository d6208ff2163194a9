// Gemma family: the llama stack with (1 + w) RMSNorms, embeddings scaled by sqrt(hidden_size) and a
// GeGLU MLP (gelu_pytorch_tanh); gemma2 adds output norms around attention and MLP ("sandwich"),
// attention and final-logit soft-capping and alternating sliding-window layers; gemma3_text adds (1 + w)
// q/k norms and its sliding layers' own rope base. Soft-capping, query_pre_attn_scalar, the sliding
// layers and the rope bases come from the config (models/layers.cpp, io/model_config.cpp). gemma4_text (Gemma 4's
// language model) keeps gemma3's sandwich with plain (w) norms, unscaled q.k over its q / k norms, a weightless
// norm on the values, wider full-attention layers with proportional RoPE whose values may be their keys
// (io/gemma4_config.cpp), a scalar on each block's output and, in its MoE checkpoints, experts beside the MLP.
#include <set>

#include "mlxgp/error.h"
#include "models/decoder.h"
#include "models/model_names.h"

namespace mlxgp {

WeightMap gemma4_model_names(WeightMap w) {
  // transformers' Gemma4TextExperts: gate_up_proj [E, 2I, hidden] (gate rows first), down_proj [E, hidden, I].
  std::set<std::string> modules;
  for (auto& [name, a] : w)
    if (name.ends_with(".experts.gate_up_proj")) modules.insert(name.substr(0, name.size() - 13));
  for (const auto& e : modules) split_fused_experts(w, e + ".", e + ".switch_mlp.");
  rename_infix(w, ".experts.switch_glu.", ".experts.switch_mlp.");  // mlx-lm's SwitchGLU
  return w;
}

WeightMap gemma4_checkpoint_names(WeightMap w, CheckpointLayout layout) {
  std::set<std::string> modules;  // "model.layers.N.experts"
  for (auto& [name, a] : w)
    if (auto at = name.find(".experts.switch_mlp."); at != std::string::npos) modules.insert(name.substr(0, at + 8));
  for (const auto& e : modules) {
    if (layout == CheckpointLayout::MlxLm) {
      rename_prefix(w, e + ".switch_mlp.", e + ".switch_glu.");
      continue;
    }
    fuse_switch_experts(w, e + ".switch_mlp.", e + ".", "gemma4_text");
  }
  return w;
}

void register_gemma() {
  DecoderOptions gemma;
  gemma.norm_plus_one = true;
  gemma.scale_embeddings = true;
  register_model_type("gemma", [gemma](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), gemma);
  });
  DecoderOptions gemma2 = gemma;
  gemma2.norms = DecoderOptions::Norms::Sandwich;
  register_model_type("gemma2", [gemma2](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), gemma2);
  });
  DecoderOptions gemma3 = gemma2;
  gemma3.attention.qk_norm = true;
  gemma3.attention.norm_plus_one = true;
  register_model_type("gemma3_text", [gemma3](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), gemma3);
  });
  DecoderOptions gemma4 = gemma2;
  gemma4.norm_plus_one = false;  // Gemma4RMSNorm scales by w
  gemma4.attention.qk_norm = true;
  gemma4.attention.v_norm = true;
  gemma4.attention.unscaled = true;
  gemma4.layer_scalar = true;
  gemma4.moe.gemma4 = true;
  register_model_type("gemma4_text", [gemma4](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o = gemma4;
    o.moe_beside_mlp = c.num_experts > 0;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
