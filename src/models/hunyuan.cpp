// Hunyuan dense (hunyuan_v1_dense: Hunyuan-0.5B / 1.8B / 4B / 7B): the llama stack with per-head q / k RMSNorms
// (query_layernorm, key_layernorm) applied after RoPE, and "dynamic" RoPE with a fixed alpha read as a stretched
// base (config parsing: transformers' ntk_alpha). Hunyuan MoE (hunyuan_v1_moe: Hunyuan-A13B): the same attention,
// every layer's experts (a float32 softmax router, gate.wg, top-k renormalised) beside an ungated shared_mlp.
#include "models/decoder.h"

namespace mlxgp {

void register_hunyuan() {
  register_model_type("hunyuan_v1_dense", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.qk_norm_after_rope = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
  register_model_type("hunyuan_v1_moe", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.qk_norm_after_rope = true;
    o.moe.router = "gate.wg";
    o.moe.shared_expert = "shared_mlp";
    o.moe.shared_expert_gate = false;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
