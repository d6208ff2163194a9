// Mixture-of-experts architectures on the llama stack (models/moe.h): mixtral (top-2 of 8, always
// renormalised, per-expert w1/w3/w2), qwen2_moe (q/k/v biases, a shared expert behind a sigmoid gate,
// dense layers by decoder_sparse_step / mlp_only_layers), qwen3_moe (q/k norms, norm_topk_prob), olmoe (OLMoE:
// qwen's expert names, every layer sparse, olmo2's RMSNorm over the whole q / k projections, pre-norm blocks).
#include "models/decoder.h"

namespace mlxgp {

void register_moe() {
  register_model_type("mixtral", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.moe.mixtral_names = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
  register_model_type("qwen2_moe", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.qkv_bias = c.qkv_bias.value_or(true);
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
  register_model_type("qwen3_moe", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.qk_norm = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
  register_model_type("olmoe", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.qk_norm_full = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
