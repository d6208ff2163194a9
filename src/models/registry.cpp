// The model_type registry. Architectures register through explicit functions called on first use:
// self-registering statics in a static library would be dropped by the linker.
#include <algorithm>
#include <map>
#include <mutex>

#include <mlx/mlx.h>

#include "io/multimodal_config.h"
#include "mlxgp/error.h"
#include "mlxgp/model.h"
#include "models/decoder.h"
#include "models/model_names.h"
#include "models/moe.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

std::map<std::string, ModelFactory>& table() {
  static std::map<std::string, ModelFactory> t;
  return t;
}

void ensure_builtins() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_llama();
    register_mistral();
    register_qwen2();
    register_qwen3();
    register_gemma();
    register_phi3();
    register_granite();
    register_olmo2();
    register_smollm3();
    register_moe();
    register_starcoder2();
    register_gpt2();
    register_gpt_oss();
    register_glm();
    register_cohere();
    register_phi();
    register_stablelm();
    register_exaone4();
    register_ernie();
    register_hunyuan();
    register_gpt_neox();
    register_arcee();
    register_nemotron();
    register_deepseek();
    register_apertus();
    register_llama4();
    register_lfm2();
    register_qwen3_next();
  });
}

}  // namespace

void register_model_type(const std::string& model_type, ModelFactory factory) {
  table()[model_type] = std::move(factory);
}

std::vector<std::string> supported_model_types() {
  ensure_builtins();
  std::vector<std::string> names;
  for (auto& [k, v] : table()) names.push_back(k);
  // Multimodal checkpoints whose language model is one of the above (io/multimodal_config.h).
  for (const auto& wrapper : io::multimodal_wrappers()) names.push_back(wrapper);
  std::sort(names.begin(), names.end());
  return names;
}

std::unique_ptr<Model> create_model(const ModelConfig& config, WeightMap weights) {
  ensure_builtins();
  auto it = table().find(config.model_type);
  if (it == table().end()) {
    std::string list;
    for (auto& n : supported_model_types()) list += (list.empty() ? "" : ", ") + n;
    fail("model", "unknown model_type '" + config.model_type + "' (supported: " + list + ")");
  }
  return it->second(config, to_model_names(config, std::move(weights)));
}

WeightMap to_model_names(const ModelConfig& config, WeightMap weights) {
  if (!config.multimodal_model_type.empty()) weights = language_model_names(std::move(weights));
  if (config.kv_lora_rank > 0) weights = deepseek_model_names(config, std::move(weights));
  return to_model_names(config.model_type, std::move(weights));
}

WeightMap to_checkpoint_names(const ModelConfig& config, WeightMap weights, CheckpointLayout layout) {
  weights = to_checkpoint_names(config.model_type, std::move(weights), layout);
  if (config.kv_lora_rank > 0) weights = deepseek_checkpoint_names(config, std::move(weights), layout);
  if (!config.multimodal_model_type.empty())
    weights = language_model_checkpoint_names(std::move(weights), config.multimodal_model_type, layout);
  return weights;
}

const mx::array* final_norm_weight(const WeightMap& w) {
  for (const char* name : {"model.norm.weight", "model.final_layernorm.weight", "model.final_layer_norm.weight"})
    if (auto it = w.find(name); it != w.end()) return &it->second;
  return nullptr;
}

const mx::array* activation_dtype_weight(const WeightMap& w) {
  if (const auto* norm = final_norm_weight(w)) return norm;
  for (const char* name : {"model.embed_tokens.scales", "model.embed_tokens.weight"})
    if (auto it = w.find(name); it != w.end() && mx::issubdtype(it->second.dtype(), mx::floating)) return &it->second;
  return nullptr;
}

bool is_fp32_router_tensor(const WeightMap& w, const std::string& name) {
  // (hunyuan_v1_moe's router, which HunYuanMoEV1Gate builds in float32)
  if (name.ends_with(".e_score_correction_bias") || name.ends_with(".mlp.gate.wg.weight")) return true;
  if (name.ends_with(".feed_forward.expert_bias")) return true;  // (lfm2_moe's, float32 in mlx-lm too)
  const std::string router = ".mlp.gate.weight";
  if (!name.ends_with(router)) return false;
  const std::string mlp = name.substr(0, name.size() - 12);  // (ernie4_5_moe's bias under mlp.moe_statics)
  return w.count(mlp + ".gate.e_score_correction_bias") || w.count(mlp + ".moe_statics.e_score_correction_bias");
}

WeightMap to_model_names(const std::string& model_type, WeightMap weights) {
  if (model_type == "gpt2" || model_type == "gpt_bigcode")
    return gpt2_model_names(std::move(weights), model_type == "gpt_bigcode");
  if (model_type == "gpt_oss") return gpt_oss_model_names(std::move(weights));
  if (model_type == "stablelm") return stablelm_model_names(std::move(weights));
  if (model_type == "gpt_neox") return gpt_neox_model_names(std::move(weights));
  if (model_type == "granitemoe") return granitemoe_model_names(std::move(weights));
  if (model_type == "dots1") return dots1_model_names(std::move(weights));
  if (model_type == "llama4_text") return llama4_model_names(std::move(weights));
  if (model_type == "gemma4_text") return gemma4_model_names(std::move(weights));
  if (model_type == "lfm2_moe") return lfm2_model_names(std::move(weights));
  if (model_type == "qwen3_next" || model_type == "qwen3_5_text" || model_type == "qwen3_5_moe_text")
    return qwen3_next_model_names(std::move(weights));
  return weights;
}

WeightMap to_checkpoint_names(const std::string& model_type, WeightMap weights, CheckpointLayout layout) {
  if (model_type == "gpt2" || model_type == "gpt_bigcode")
    return gpt2_checkpoint_names(std::move(weights), layout, model_type == "gpt_bigcode");
  if (model_type == "gpt_oss") return gpt_oss_checkpoint_names(std::move(weights), layout);
  if (model_type == "stablelm") return stablelm_checkpoint_names(std::move(weights));
  if (model_type == "gpt_neox") return gpt_neox_checkpoint_names(std::move(weights), layout);
  if (model_type == "granitemoe") return granitemoe_checkpoint_names(std::move(weights), layout);
  if (model_type == "dots1") return dots1_checkpoint_names(std::move(weights), layout);
  if (model_type == "apertus") return apertus_checkpoint_names(std::move(weights), layout);
  if (model_type == "lfm2" || model_type == "lfm2_moe")
    return lfm2_checkpoint_names(model_type, std::move(weights), layout);
  if (model_type == "qwen3_next" || model_type == "qwen3_5_text" || model_type == "qwen3_5_moe_text")
    return qwen3_next_checkpoint_names(model_type, std::move(weights), layout);
  if (model_type == "llama4_text") return llama4_checkpoint_names(std::move(weights), layout);
  if (model_type == "gemma4_text") return gemma4_checkpoint_names(std::move(weights), layout);
  // transformers' MoE checkpoints hold one tensor per expert (mlx-lm's, like mlxgp, the stacked switch_mlp).
  if (layout == CheckpointLayout::Hf &&
      (model_type == "mixtral" || model_type == "phimoe" || model_type == "qwen2_moe" || model_type == "qwen3_moe" ||
       model_type == "olmoe" || model_type == "glm4_moe" || model_type == "deepseek_v2" ||
       model_type == "deepseek_v3" || model_type == "glm4_moe_lite" || model_type == "ernie4_5_moe" ||
       model_type == "hunyuan_v1_moe"))
    layers::unstack_experts(weights, model_type == "mixtral" || model_type == "phimoe");
  return weights;
}

mx::array Model::forward_embeddings_last(const mx::array& embeddings, KVCacheList& caches, int n) {
  auto logits = forward_embeddings(embeddings, caches);
  const int T = logits.shape(1);
  if (n <= 0 || n > T) fail("model", "forward_last: n must be in [1, " + std::to_string(T) + "]");
  return mx::slice(logits, {0, T - n, 0}, logits.shape());
}

void Model::check_layer_count(int n) const {
  const int total = config().num_hidden_layers;
  if (n < 1 || n > total)
    fail("config", "draft_layers must be between 1 and the model's " + std::to_string(total) + " layers (got " +
                       std::to_string(n) + ")");
}

WeightMap Model::layers_below(const WeightMap& weights, int n) {
  static const std::string prefix = "model.layers.";
  WeightMap kept;
  for (const auto& [name, array] : weights) {
    int layer = -1;  // the block index of "model.layers.<i>.<...>", -1 for other parameters
    if (name.compare(0, prefix.size(), prefix) == 0) {
      const size_t end = name.find('.', prefix.size());
      if (end != std::string::npos && end > prefix.size()) try {
          layer = std::stoi(name.substr(prefix.size(), end - prefix.size()));
        } catch (...) {
        }
    }
    if (layer < n) kept.emplace(name, array);  // mx::array copies share the buffer
  }
  return kept;
}

std::shared_ptr<Model> Model::first_layers(int n) {
  check_layer_count(n);
  if (tensor_parallel_group()) fail("distributed", "this model cannot make a draft of its first layers when sharded");
  ModelConfig c = config();
  c.num_hidden_layers = n;
  return std::shared_ptr<Model>(create_model(c, layers_below(parameters(), n)));
}

void Model::shard(const mx::distributed::Group& group) {
  if (group.size() > 1) fail("distributed", "tensor parallelism is not implemented for this model");
}

KVCacheList Model::make_caches() const {
  KVCacheList caches;
  for (int i = 0; i < config().num_hidden_layers; ++i) caches.push_back(std::make_unique<StandardKVCache>());
  return caches;
}

}  // namespace mlxgp
