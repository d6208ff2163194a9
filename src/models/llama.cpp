// Llama (incl. Llama-3 rope scaling) and SmolLM: the plain decoder.
#include "models/decoder.h"

namespace mlxgp {

void register_llama() {
  register_model_type("llama", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
