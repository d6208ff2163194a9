// OLMo 2: norms on the sub-layer outputs only (post_attention_layernorm, post_feedforward_layernorm)
// and RMSNorm over the whole q / k projections before the head split.
#include "models/decoder.h"

namespace mlxgp {

void register_olmo2() {
  register_model_type("olmo2", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.norms = DecoderOptions::Norms::Post;
    o.attention.qk_norm_full = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
