// DecoderModel: the pre-norm decoder stack (embed -> [norm, attention, residual, norm, SwiGLU,
// residual] x N -> norm -> head) that llama, mistral, qwen2 and qwen3 share. The per-architecture
// files only choose DecoderOptions and register a factory.
#pragma once

#include <vector>

#include "models/layers.h"

namespace mx = mlx::core;

namespace mlxgp {

struct DecoderOptions {
  layers::AttentionOptions attention;
};

class DecoderModel : public Model {
 public:
  DecoderModel(const ModelConfig& config, WeightMap weights, const DecoderOptions& options);
  const ModelConfig& config() const override { return config_; }
  mx::array embed(const mx::array& tokens) const override;
  mx::array forward_embeddings(const mx::array& embeddings, KVCacheList& caches) override;
  mx::array forward_embeddings_last(const mx::array& embeddings, KVCacheList& caches, int n = 1) override;
  mx::array lm_head(const mx::array& hidden) const override;
  WeightMap& parameters() override { return weights_; }
  void set_parameters(const WeightMap& updates, bool allow_new = false) override;

 private:
  void build(const WeightMap& weights);  // (re)creates the layers from `weights`
  mx::array hidden_states(const mx::array& embeddings, KVCacheList& caches);  // final-normed
  // The head plus the Logits hooks; `offset` is the absolute position of h's first row.
  mx::array head(const mx::array& h, int offset);
  int last_offset_ = 0;  // cache offset at the start of the current forward (for the Logits hooks)
  struct Block {
    layers::RMSNorm input_norm, post_attention_norm;
    layers::Attention attention;
    layers::SwiGLU mlp;
  };
  ModelConfig config_;
  WeightMap weights_;
  DecoderOptions options_;
  layers::Embedding embed_tokens_;
  std::vector<Block> blocks_;
  layers::RMSNorm norm_;
  std::optional<layers::Linear> lm_head_;  // absent when tied to the embeddings
};

// Called by the registry on first use (explicit, so a static library cannot drop them).
void register_llama();
void register_mistral();
void register_qwen2();
void register_qwen3();

}  // namespace mlxgp
