// ERNIE 4.5 (ernie4_5: ERNIE-4.5-0.3B) and Helium (helium: Kyutai's Helium-1 2B): the llama stack with RoPE in
// interleaved pairs (their rotate_half stacks (-x2, x1) pairwise); ERNIE's biases on every linear when use_bias,
// Helium's attention_bias on q / k / v only (config parsing). ERNIE 4.5 MoE (ernie4_5_moe: 21B-A3B, 300B-A47B): the
// same attention, routed experts (bias-free) beside ungated shared_experts, routed on softmax probabilities plus
// moe_statics' correction bias (models/moe.h), a tied head that keeps a bias of its own with use_bias.
#include "models/decoder.h"

namespace mlxgp {

void register_ernie() {
  auto factory = [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.rope_traditional = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  };
  register_model_type("ernie4_5", factory);
  register_model_type("helium", factory);
  register_model_type("ernie4_5_moe", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.rope_traditional = true;
    o.lm_head_bias = c.lm_head_bias;
    o.moe.shared_expert = "shared_experts";
    o.moe.shared_expert_gate = false;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
