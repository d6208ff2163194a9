// Mistral: the llama stack; every layer attends within config.sliding_window when it is set
// (config.sliding_layers, applied by DecoderModel).
#include "models/decoder.h"

namespace mlxgp {

void register_mistral() {
  register_model_type("mistral", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), DecoderOptions{});
  });
}

}  // namespace mlxgp
