// LFM2 (lfm2: LiquidAI's LFM2-350M / 700M / 1.2B / 2.6B): pre-norm blocks (operator_norm, ffn_norm) whose mixer is
// a gated short convolution (models/short_conv.h) on the layers ModelConfig::conv_layers marks and attention with
// per-head q / k RMSNorms (q_layernorm, k_layernorm) before RoPE elsewhere; a w1 / w3 / w2 SwiGLU and the final
// embedding_norm.
#include "models/decoder.h"
#include "models/model_names.h"

namespace mlxgp {

WeightMap lfm2_checkpoint_names(WeightMap weights, CheckpointLayout layout) {
  for (auto& [name, a] : weights)
    if (name.ends_with(".conv.conv.weight") && a.ndim() >= 2) {
      const int hidden = a.shape(0), kernel = static_cast<int>(a.size()) / hidden;
      a = mx::reshape(a, layout == CheckpointLayout::Hf ? mx::Shape{hidden, 1, kernel} : mx::Shape{hidden, kernel, 1});
    }
  return weights;
}

void register_lfm2() {
  register_model_type("lfm2", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.qk_norm = true;
    o.attention.q_norm = "q_layernorm";
    o.attention.k_norm = "k_layernorm";
    o.attention.o_proj = "out_proj";
    o.norm_names.input = "operator_norm";
    o.norm_names.post_attention = "ffn_norm";
    o.mlp_prefix = "feed_forward";
    o.gated_mlp_names = {"w1", "w3", "w2"};
    o.final_norm = "embedding_norm";
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
