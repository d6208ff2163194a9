// EXAONE 4.0 (exaone4): OLMo 2's blocks (norms only on the sub-layer outputs) with Qwen 3's per-head q / k RMSNorms,
// three sliding-window layers to each global one, and no RoPE on the global layers when there is a window
// (config parsing: sliding_layers, rope_layers).
#include "models/decoder.h"

namespace mlxgp {

void register_exaone4() {
  register_model_type("exaone4", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.norms = DecoderOptions::Norms::Post;
    o.attention.qk_norm = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
