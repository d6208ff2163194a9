// The Model interface: one implementation per HF model_type (src/models/), created by the registry.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <mlx/array.h>
#include <mlx/distributed/distributed.h>

#include "mlxgp/extra_params.h"
#include "mlxgp/hooks.h"
#include "mlxgp/kv_cache.h"
#include "mlxgp/model_config.h"

namespace mlxgp {

using WeightMap = std::unordered_map<std::string, mlx::core::array>;

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;

  // Token ids [B, T] (int32) -> embeddings [B, T, hidden]. Ids must lie in [0, vocab_size): they
  // are not checked here (that would cost a host sync per step); callers validate them.
  virtual mlx::core::array embed(const mlx::core::array& tokens) const = 0;
  // Embeddings [B, T, hidden] -> logits [B, T, vocab] (float32), reading and extending `caches`.
  // Positions start at caches[0]->offset(). Soft prompts and inputs_embeds use this path.
  virtual mlx::core::array forward_embeddings(const mlx::core::array& embeddings, KVCacheList& caches) = 0;
  mlx::core::array forward(const mlx::core::array& tokens, KVCacheList& caches) {
    return forward_embeddings(embed(tokens), caches);
  }
  // Same, but logits only for the last `n` positions ([B, n, vocab]): a prefill that only needs
  // the next-token distribution runs the output head once instead of T times (the head is the
  // largest matmul of small models). The base version slices forward_embeddings().
  virtual mlx::core::array forward_embeddings_last(const mlx::core::array& embeddings, KVCacheList& caches, int n = 1);
  mlx::core::array forward_last(const mlx::core::array& tokens, KVCacheList& caches, int n = 1) {
    return forward_embeddings_last(embed(tokens), caches, n);
  }

  // The output head alone, without the final norm: [..., hidden] -> [..., vocab] float32 (a persona
  // vector's direct effect on the vocabulary is lm_head(v)).
  virtual mlx::core::array lm_head(const mlx::core::array& hidden) const = 0;

  // One cache per layer.
  virtual KVCacheList make_caches() const;
  // The model's parameters by HF name (quantized linears add ".scales"/".biases").
  virtual WeightMap& parameters() = 0;
  // Replaces parameters by name and rebuilds the layers from them (training swaps in traced or
  // updated arrays this way). New names (LoRA adapters) need allow_new. Shapes must match.
  // Throws [model]; on error the model is unchanged.
  virtual void set_parameters(const WeightMap& updates, bool allow_new = false) = 0;

  // Tensor parallelism (mlxgp/distributed.h shard_model): keep this rank's share of every layer and sum
  // the partial outputs over `group`. The base version refuses with [distributed].
  virtual void shard(const mlx::core::distributed::Group& group);
  // The group a sharded model sums over; nullopt for a whole model. Whatever runs on a sharded model
  // must run alike on every rank (the same random seed, the same stopping decisions).
  virtual std::optional<mlx::core::distributed::Group> tensor_parallel_group() const { return std::nullopt; }
  // A model of the first `n` layers sharing these arrays (self-speculation's draft); a sharded model's is
  // sharded alike. Throws [config] unless 1 <= n <= num_hidden_layers.
  virtual std::shared_ptr<Model> first_layers(int n);

 protected:
  void check_layer_count(int n) const;  // throws [config] unless 1 <= n <= num_hidden_layers
  // The parameters outside model.layers.<i> for i >= n.
  static WeightMap layers_below(const WeightMap& weights, int n);

 public:
  // Hooks run inside every forward (hooks.h).
  HookList& hooks() { return hooks_; }
  const HookList& hooks() const { return hooks_; }
  // Named extra parameters: model["_persona_v"] = v.
  ExtraParams& extra_params() { return extra_params_; }
  ExtraParams::Ref operator[](const std::string& key) { return extra_params_[key]; }
  // LoRA dropout (set by add_lora / load_lora): the Trainer applies it to the adapters' input during its
  // training steps only; evaluation and generation never drop.
  struct LoraDropout {
    double p = 0.0;
    uint64_t seed = 0;
  };
  LoraDropout& lora_dropout() { return lora_dropout_; }

 private:
  HookList hooks_;
  ExtraParams extra_params_;
  LoraDropout lora_dropout_;
};

// Registry keyed by HF model_type.
using ModelFactory = std::function<std::unique_ptr<Model>(const ModelConfig&, WeightMap)>;
void register_model_type(const std::string& model_type, ModelFactory factory);
std::vector<std::string> supported_model_types();
// Throws [model] "unknown model_type 'x' (supported: llama, mistral, qwen2, qwen3)".
std::unique_ptr<Model> create_model(const ModelConfig& config, WeightMap weights);

}  // namespace mlxgp
