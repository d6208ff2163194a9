// Qwen3: the llama stack with per-head RMSNorm on q and k (q_norm/k_norm) before RoPE.
#include "models/decoder.h"

namespace mlxgp {

void register_qwen3() {
  register_model_type("qwen3", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.qk_norm = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
