// Granite: the llama stack with four config multipliers (embedding_multiplier, residual_multiplier,
// attention_multiplier as the attention scale, logits / logits_scaling), applied by DecoderModel.
#include "models/decoder.h"

namespace mlxgp {

void register_granite() {
  register_model_type("granite", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), DecoderOptions{});
  });
}

}  // namespace mlxgp
