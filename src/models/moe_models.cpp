// Mixture-of-experts architectures on the llama stack (models/moe.h): mixtral (top-2 of 8, always
// renormalised, per-expert w1/w3/w2), qwen2_moe (q/k/v biases, a shared expert behind a sigmoid gate,
// dense layers by decoder_sparse_step / mlp_only_layers), qwen3_moe (q/k norms, norm_topk_prob), olmoe (OLMoE:
// qwen's expert names, every layer sparse, olmo2's RMSNorm over the whole q / k projections, pre-norm blocks), dots1
// (dots.llm1: qwen3's attention with its optional windowed layers, DeepSeek-V3's sigmoid-routed experts beside ungated
// shared_experts after first_k_dense_replace dense layers).
#include "models/decoder.h"
#include "models/model_names.h"

namespace mlxgp {

namespace {

// `from` -> `to` in every name holding ".mlp.<from>.<proj>." (the stacked experts' module).
WeightMap rename_experts(WeightMap weights, const std::string& from, const std::string& to) {
  WeightMap out;
  for (auto& [name, a] : weights) {
    std::string n = name;
    for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) {
      const std::string key = ".mlp." + from + "." + proj + ".";
      if (auto at = n.find(key); at != std::string::npos) n.replace(at, key.size(), ".mlp." + to + "." + proj + ".");
    }
    out.insert_or_assign(n, a);
  }
  return out;
}

}  // namespace

WeightMap dots1_model_names(WeightMap weights) { return rename_experts(std::move(weights), "experts", "switch_mlp"); }

WeightMap dots1_checkpoint_names(WeightMap weights, CheckpointLayout layout) {
  if (layout == CheckpointLayout::Hf) {
    layers::unstack_experts(weights, false);
    return weights;
  }
  return rename_experts(std::move(weights), "switch_mlp", "experts");
}

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
  register_model_type("dots1", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.qk_norm = true;
    o.moe.shared_expert = "shared_experts";
    o.moe.shared_expert_gate = false;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
