// LFM2 (lfm2: LiquidAI's LFM2-350M / 700M / 1.2B / 2.6B): pre-norm blocks (operator_norm, ffn_norm) whose mixer is
// a gated short convolution (models/short_conv.h) on the layers ModelConfig::conv_layers marks and attention with
// per-head q / k RMSNorms (q_layernorm, k_layernorm) before RoPE elsewhere; a w1 / w3 / w2 SwiGLU and the final
// embedding_norm. LFM2-MoE (lfm2_moe: LFM2-8B-A1B): the same blocks, num_dense_layers dense ones first, then
// experts (feed_forward.experts.E.w1 / w3 / w2, stacked at load) chosen by a sigmoid router whose choice adds
// feed_forward.expert_bias, the chosen scores renormalised (+ 1e-6) and times routed_scaling_factor.
#include "models/decoder.h"
#include "models/model_names.h"

namespace mlxgp {

namespace {

// mlx-lm's lfm2_moe names the dense layers' w1 / w3 / w2 gate_proj / up_proj / down_proj (its sanitize).
const std::pair<const char*, const char*> kMlxLmDense[] = {{".feed_forward.w1.", ".feed_forward.gate_proj."},
                                                           {".feed_forward.w3.", ".feed_forward.up_proj."},
                                                           {".feed_forward.w2.", ".feed_forward.down_proj."}};

}  // namespace

WeightMap lfm2_model_names(WeightMap weights) {
  for (auto& [ours, mlx_lm] : kMlxLmDense) rename_infix(weights, mlx_lm, ours);
  return weights;
}

WeightMap lfm2_checkpoint_names(const std::string& model_type, WeightMap weights, CheckpointLayout layout) {
  for (auto& [name, a] : weights)
    if (name.ends_with(".conv.conv.weight") && a.ndim() >= 2) {
      const int hidden = a.shape(0), kernel = static_cast<int>(a.size()) / hidden;
      a = mx::reshape(a, layout == CheckpointLayout::Hf ? mx::Shape{hidden, 1, kernel} : mx::Shape{hidden, kernel, 1});
    }
  if (model_type != "lfm2_moe") return weights;
  if (layout == CheckpointLayout::Hf) {
    layers::unstack_experts(weights, true);  // transformers' feed_forward.experts.E.w1 / w3 / w2
  } else {
    for (auto& [ours, mlx_lm] : kMlxLmDense) rename_infix(weights, ours, mlx_lm);
  }
  return weights;
}

static DecoderOptions lfm2_options() {
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
  return o;
}

void register_lfm2() {
  register_model_type("lfm2", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), lfm2_options());
  });
  register_model_type("lfm2_moe", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o = lfm2_options();
    o.moe.block = "feed_forward";
    o.moe.w_names = true;
    o.moe.renorm_eps = 1e-6f;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
