// Phi-3: the llama stack with fused projections (qkv_proj rows [q; k; v], gate_up_proj rows [gate; up]),
// optional partial rotary and LongRoPE ("longrope" / "su") scaling, read from the config.
// Phi-3.5-MoE (phimoe): mixtral's blocks (block_sparse_moe, experts w1 / w3 / w2) with LayerNorms (weight and bias),
// biases on q / k / v / o with attention_bias and on the head with lm_head_bias, experts chosen by sparsemixer
// (ModelConfig::sparsemixer), LongRoPE with its own short / long multipliers.
#include "models/decoder.h"

namespace mlxgp {

void register_phi3() {
  register_model_type("phi3", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.fused_qkv = true;
    o.mlp = layers::SwiGLU::Kind::GatedFused;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
  register_model_type("phimoe", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.layer_norm = true;
    o.lm_head_bias = c.lm_head_bias;
    o.moe.mixtral_names = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
