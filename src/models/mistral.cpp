// Mistral: the llama stack; sliding-window spans beyond the window are refused.
#include "models/decoder.h"

namespace mlxgp {

void register_mistral() {
  register_model_type("mistral", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.enforce_sliding_window = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
