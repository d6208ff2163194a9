// GLM-4 (glm: GLM-4-9B-chat-hf; glm4: GLM-4-0414, GLM-Z1): the llama stack with q/k/v biases (config parsing
// moves attention_bias there; o_proj has none), a fused gate_up_proj ([gate; up] rows) and RoPE on the first
// half of each head in interleaved pairs. glm4 adds gemma's sandwich norms under its own names; glm4_moe below.
#include "models/decoder.h"

namespace mlxgp {

namespace {

DecoderOptions glm_options() {
  DecoderOptions o;
  o.mlp = layers::SwiGLU::Kind::GatedFused;
  o.attention.rope_traditional = true;  // transformers' glm apply_rotary_pos_emb: repeat_interleave'd cos / sin
  return o;
}

}  // namespace

void register_glm() {
  register_model_type("glm", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), glm_options());
  });
  register_model_type("glm4", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o = glm_options();
    o.norms = DecoderOptions::Norms::Sandwich;
    o.norm_names = {"input_layernorm", "post_self_attn_layernorm", "post_attention_layernorm", "post_mlp_layernorm"};
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
  // GLM-4.5 / 4.6 (glm4_moe): the llama stack with q/k/v biases, optional per-head q/k RMSNorms (use_qk_norm), the
  // usual rotate-half RoPE on half of each head, dense first layers, then sigmoid-routed experts beside ungated
  // shared_experts (layers::SparseMoe).
  register_model_type("glm4_moe", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.qk_norm = c.use_qk_norm;
    o.moe.shared_expert = "shared_experts";
    o.moe.shared_expert_gate = false;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
