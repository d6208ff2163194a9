// Arcee (arcee: AFM-4.5B): the llama stack with an ungated up_proj -> relu2 -> down_proj MLP.
#include "models/decoder.h"

namespace mlxgp {

void register_arcee() {
  register_model_type("arcee", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.mlp = layers::SwiGLU::Kind::Plain;
    o.plain_mlp_names = {"up_proj", "down_proj"};
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
