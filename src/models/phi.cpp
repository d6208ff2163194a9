// Phi (phi-1, phi-1.5, phi-2): one LayerNorm a block (weight and bias) that attention and the MLP both read
// (x + attention(n) + mlp(n)), biases on every projection, RoPE on part of each head (partial_rotary_factor,
// 0.5 by default), an ungated fc1 -> gelu_new -> fc2 MLP, the output projection named dense, a final_layernorm
// and a head with a bias. qk_layernorm is refused by config parsing.
#include "models/decoder.h"

namespace mlxgp {

void register_phi() {
  register_model_type("phi", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.norms = DecoderOptions::Norms::Parallel;
    o.layer_norm = true;
    o.mlp = layers::SwiGLU::Kind::Plain;
    o.plain_mlp_names = {"fc1", "fc2"};
    o.attention.o_proj = "dense";
    o.final_norm = "final_layernorm";
    o.lm_head_bias = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
