// OLMo (olmo): the llama decoder with LayerNorms that have neither weight nor bias (OlmoLayerNorm, epsilon 1e-5) and
// q / k / v clamped to clip_qkv after their projections (Attention::clip_qkv).
// OLMo 2: norms on the sub-layer outputs only (post_attention_layernorm, post_feedforward_layernorm)
// and RMSNorm over the whole q / k projections before the head split. OLMo 3 (olmo3): the same blocks, three
// sliding-window layers to each global one, the rope scaling on the global layers only (config parsing).
#include "models/decoder.h"

namespace mlxgp {

void register_olmo2() {
  auto factory = [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.norms = DecoderOptions::Norms::Post;
    o.attention.qk_norm_full = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  };
  register_model_type("olmo2", factory);
  register_model_type("olmo", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.norm_weightless = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
  register_model_type("olmo3", factory);
}

}  // namespace mlxgp
