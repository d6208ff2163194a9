// SmolLM3: the llama stack where the layers no_rope_layers marks 0 attend without positions (NoPE);
// the per-layer choice comes from the config (ModelConfig::rope_layers).
#include "models/decoder.h"

namespace mlxgp {

void register_smollm3() {
  register_model_type("smollm3", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), DecoderOptions{});
  });
}

}  // namespace mlxgp
