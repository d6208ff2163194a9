// ERNIE 4.5 (ernie4_5: ERNIE-4.5-0.3B) and Helium (helium: Kyutai's Helium-1 2B): the llama stack with RoPE in
// interleaved pairs (their rotate_half stacks (-x2, x1) pairwise); ERNIE's biases on every linear when use_bias,
// Helium's attention_bias on q / k / v only (config parsing).
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
}

}  // namespace mlxgp
