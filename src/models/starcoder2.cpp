// StarCoder2: the decoder with LayerNorms (weight and bias, norm_epsilon), biases on every projection
// (use_bias), an ungated c_fc -> gelu_pytorch_tanh -> c_proj MLP, RoPE and an optional sliding window on
// every layer.
#include "models/decoder.h"

namespace mlxgp {

void register_starcoder2() {
  register_model_type("starcoder2", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.layer_norm = true;
    o.mlp = layers::SwiGLU::Kind::Plain;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
