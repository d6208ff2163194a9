// Phi-3: the llama stack with fused projections (qkv_proj rows [q; k; v], gate_up_proj rows [gate; up]),
// optional partial rotary and LongRoPE ("longrope" / "su") scaling, read from the config.
#include "models/decoder.h"

namespace mlxgp {

void register_phi3() {
  register_model_type("phi3", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.fused_qkv = true;
    o.mlp = layers::SwiGLU::Kind::GatedFused;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
