// ERNIE 4.5 (ernie4_5: ERNIE-4.5-0.3B): the llama stack with RoPE in interleaved pairs (transformers' Ernie 4.5
// rotate_half stacks (-x2, x1) pairwise), biases on every linear when use_bias (config parsing), head_dim 128.
#include "models/decoder.h"

namespace mlxgp {

void register_ernie() {
  register_model_type("ernie4_5", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.rope_traditional = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
