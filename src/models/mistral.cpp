// Mistral: the llama stack; every layer attends within config.sliding_window when it is set
// (config.sliding_layers, applied by DecoderModel). Ministral 3 (ministral3, the language model of its
// mistral3 checkpoints) is the same stack with YaRN and queries scaled by position past its original length
// (ModelConfig::llama4_scaling_beta, applied by the attention layers).
#include "models/decoder.h"

namespace mlxgp {

void register_mistral() {
  register_model_type("mistral", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), DecoderOptions{});
  });
  register_model_type("ministral3", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), DecoderOptions{});
  });
}

}  // namespace mlxgp
