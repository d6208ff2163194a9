// Nemotron (nemotron: Nemotron-Mini-4B, Minitron 4B / 8B, Nemotron-4 15B / 340B): the llama stack with
// LayerNorm1P (a LayerNorm with a bias that scales by 1 + w), RoPE on half of each head (partial_rotary_factor)
// and an ungated up_proj -> relu2 -> down_proj MLP; norm_eps is its epsilon (config parsing).
#include "models/decoder.h"

namespace mlxgp {

void register_nemotron() {
  register_model_type("nemotron", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.layer_norm = true;
    o.norm_plus_one = true;
    o.mlp = layers::SwiGLU::Kind::Plain;
    o.plain_mlp_names = {"up_proj", "down_proj"};
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
