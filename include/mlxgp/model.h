// The Model interface: one implementation per HF model_type (src/models/), created by the registry.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/kv_cache.h"
#include "mlxgp/model_config.h"

namespace mlxgp {

namespace mx = mlx::core;

using WeightMap = std::unordered_map<std::string, mx::array>;

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;

  // Token ids [B, T] (int32) -> embeddings [B, T, hidden].
  virtual mx::array embed(const mx::array& tokens) const = 0;
  // Embeddings [B, T, hidden] -> logits [B, T, vocab] (float32), reading and extending `caches`.
  // Positions start at caches[0]->offset(). Soft prompts and inputs_embeds use this path.
  virtual mx::array forward_embeddings(const mx::array& embeddings, KVCacheList& caches) = 0;
  mx::array forward(const mx::array& tokens, KVCacheList& caches) {
    return forward_embeddings(embed(tokens), caches);
  }

  // One cache per layer.
  virtual KVCacheList make_caches() const;
  // The model's parameters by HF name (quantized linears add ".scales"/".biases").
  virtual WeightMap& parameters() = 0;
};

// Registry keyed by HF model_type.
using ModelFactory = std::function<std::unique_ptr<Model>(const ModelConfig&, WeightMap)>;
void register_model_type(const std::string& model_type, ModelFactory factory);
std::vector<std::string> supported_model_types();
// Throws [model] "unknown model_type 'x' (supported: llama, mistral, qwen2, qwen3)".
std::unique_ptr<Model> create_model(const ModelConfig& config, WeightMap weights);

}  // namespace mlxgp
