// Apertus (apertus: Swiss AI's Apertus 8B / 70B): the llama stack with per-head q/k RMSNorms, its norms named
// attention_layernorm / feedforward_layernorm, and an ungated MLP (up_proj, down_proj) through the xIELU activation
// with each layer's learned scalars (layers::Xielu). ApertusConfig's default rope is Llama-3's over 8192 positions
// with a base of 12e6 (model_config.cpp).
#include "models/decoder.h"
#include "models/model_names.h"

namespace mlxgp {

WeightMap apertus_checkpoint_names(WeightMap weights, CheckpointLayout layout) {
  // transformers stores alpha_p / alpha_n [1] and beta / eps []; mlx-lm's sanitize squeezes them all to [] (either
  // loads here).
  for (auto& [name, a] : weights) {
    if (name.find(".act_fn.") == std::string::npos) continue;
    const bool alpha = name.ends_with(".alpha_p") || name.ends_with(".alpha_n");
    if (layout == CheckpointLayout::Hf && alpha) a = mx::reshape(a, {1});
    if (layout == CheckpointLayout::MlxLm) a = mx::reshape(a, {});
  }
  return weights;
}

void register_apertus() {
  register_model_type("apertus", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.qk_norm = true;
    o.norm_names.input = "attention_layernorm";
    o.norm_names.post_attention = "feedforward_layernorm";
    o.mlp = layers::SwiGLU::Kind::Plain;
    o.plain_mlp_names = {"up_proj", "down_proj"};
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
