// Qwen2: the llama stack with biases on the q/k/v projections.
#include "models/decoder.h"

namespace mlxgp {

void register_qwen2() {
  register_model_type("qwen2", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.qkv_bias = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
