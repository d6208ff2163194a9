// DecoderModel: the decoder stack (embed -> [norm, attention, residual, norm, gated MLP, residual] x N
// -> norm -> head) that every architecture here shares, with the variations as DecoderOptions (norm
// placement, gemma's (1 + w) norms and embedding scale, fused projections) and config fields (soft-capping,
// granite's multipliers, per-layer rope). The per-architecture files only choose DecoderOptions and
// register a factory.
#pragma once

#include <vector>

#include "models/layers.h"
#include "models/moe.h"
#include "models/shard.h"
#include "models/gated_delta_net.h"
#include "models/short_conv.h"

namespace mx = mlx::core;

namespace mlxgp {

struct DecoderOptions {
  layers::AttentionOptions attention;
  // Where each block's norms sit. Pre (llama): input_layernorm before attention, post_attention_layernorm
  // before the MLP. Sandwich (gemma2/3): also on each sub-layer's output (post_attention_layernorm,
  // pre_feedforward_layernorm, post_feedforward_layernorm). Post (olmo2): only on the outputs. Parallel
  // (cohere): one input_layernorm that attention and MLP both read, x + attention(n) + mlp(n). ParallelTwo
  // (gpt_neox): x + attention(input_layernorm(x)) + mlp(post_attention_layernorm(x)).
  enum class Norms { Pre, Sandwich, Post, Parallel, ParallelTwo } norms = Norms::Pre;
  // The checkpoint's names of those norms, in that order (glm4 spells its sandwich post_self_attn_layernorm,
  // post_attention_layernorm, post_mlp_layernorm).
  struct NormNames {
    const char* input = "input_layernorm";
    const char* post_attention = "post_attention_layernorm";
    const char* pre_feedforward = "pre_feedforward_layernorm";
    const char* post_feedforward = "post_feedforward_layernorm";
  } norm_names;
  bool norm_plus_one = false;     // gemma: every RMSNorm scales by (1 + w); nemotron: every LayerNorm
  bool scale_embeddings = false;  // gemma: embed() multiplies by sqrt(hidden_size) in the weights' dtype
  layers::SwiGLU::Kind mlp = layers::SwiGLU::Kind::Gated;  // phi3: GatedFused; starcoder2: Plain
  bool layer_norm = false;                                 // starcoder2: LayerNorm with bias instead of RMSNorm
  bool norm_bias = true;                                   // with layer_norm: cohere's LayerNorms have no bias
  bool norm_weightless = false;                            // olmo: LayerNorms with neither weight nor bias
  layers::PlainMlpNames plain_mlp_names;                   // phi: fc1 / fc2
  layers::GatedMlpNames gated_mlp_names;                   // lfm2: w1 / w3 / w2
  const char* mlp_prefix = "mlp";                          // model.layers.N.<mlp_prefix> (lfm2: feed_forward)
  const char* final_norm = "norm";                         // model.<final_norm> (phi: final_layernorm)
  bool lm_head_bias = false;                               // phi (tied heads too: ernie4_5_moe)
  // gpt2: learned absolute positions (model.embed_positions, wpe) added to whatever enters the stack.
  bool learned_positions = false;
  // Mixture of experts when the config has experts (layers::is_moe_layer): mixtral's or qwen's names.
  layers::MoeOptions moe;
  // gemma4_text (enable_moe_block): the experts run beside the dense MLP, not instead of it: the MLP's output
  // through post_feedforward_layernorm_1 plus the experts' (fed pre_feedforward_layernorm_2 of the residual, routed
  // on the residual itself) through post_feedforward_layernorm_2, then post_feedforward_layernorm as usual.
  bool moe_beside_mlp = false;
  // gemma4_text: each block's output times its model.layers.N.layer_scalar [1].
  bool layer_scalar = false;
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
  void shard(const mx::distributed::Group& group) override;
  std::optional<mx::distributed::Group> tensor_parallel_group() const override {
    return tp_ ? std::optional<mx::distributed::Group>(tp_->group) : std::nullopt;
  }
  std::shared_ptr<Model> first_layers(int n) override;
  // A RecurrentCache for each recurrent layer (ModelConfig::conv_layers, linear_layers), a standard cache elsewhere.
  KVCacheList make_caches() const override;

 private:
  void build(const WeightMap& weights);                                       // (re)creates the layers from `weights`
  mx::array hidden_states(const mx::array& embeddings, KVCacheList& caches);  // final-normed
  // The head plus the Logits hooks; `offset` is the absolute position of h's first row.
  mx::array head(const mx::array& h, int offset);
  int last_offset_ = 0;  // cache offset at the start of the current forward (for the Logits hooks)
  struct Block {
    std::optional<layers::RMSNorm> input_norm, post_attention_norm, pre_feedforward_norm, post_feedforward_norm;
    layers::Attention attention;
    // lfm2's convolution layers (ModelConfig::conv_layers), qwen3_next's gated delta nets
    // (ModelConfig::linear_layers): the block's mixer instead of `attention`.
    std::optional<layers::ShortConv> conv;
    std::optional<layers::GatedDeltaNet> delta;
    bool recurrent() const { return conv || delta; }
    // The recurrent mixer over the normed input `n`.
    mx::array mix(const mx::array& n, KVCache& cache) const { return conv ? (*conv)(n, cache) : (*delta)(n, cache); }
    std::optional<layers::SwiGLU> mlp;     // dense layers
    std::optional<layers::SparseMoe> moe;  // mixture-of-experts layers
    // moe_beside_mlp: the experts' own norms (pre_feedforward_layernorm_2, post_feedforward_layernorm_1 / _2).
    std::optional<layers::RMSNorm> pre_experts_norm, post_mlp_norm, post_experts_norm;
    std::optional<mx::array> layer_scalar;
    // gemma4_text's per-layer input (ModelConfig::per_layer_input_size): h + norm(projection(act(gate(h)) * input)).
    struct PerLayerInput {
      layers::Linear gate, projection;
      layers::RMSNorm norm;
      layers::SwiGLU::Act act;
    };
    std::optional<PerLayerInput> per_layer_input;
    // gemma4_text's key/value sharing: the slot (0 sliding, 1 full attention) this layer leaves its keys and values in
    // for later layers (it is the last of its type before them), or reads them from (Attention::kv_shared); -1: none.
    int kv_slot = -1;
  };
  // `shared`: the SharedKV slots of this forward (gemma4_text); `per_layer`: this layer's input [B, T, P]
  // (gemma4_text).
  mx::array block(const Block& b, const mx::array& h, KVCache& cache, const AttentionMask* mask,
                  layers::SharedKV* shared = nullptr, const mx::array* per_layer = nullptr) const;
  // Every block of a decode step (one position per row) as one fused node where each op of each block would
  // run its CPU kernel and nothing observes the layers in between (decoder_fused.cpp); nullopt otherwise.
  std::optional<mx::array> fused_decode(const mx::array& h, KVCacheList& caches, const AttentionMask& mask,
                                        const std::optional<AttentionMask>& local) const;
  ModelConfig config_;  // the whole model's, also when sharded
  struct TensorParallel {
    mx::distributed::Group group;
    shard::Plan plan;
  };
  // A model already sharded as `tp` says, from this rank's share of the weights (first_layers).
  DecoderModel(const ModelConfig& config, const WeightMap& weights, const DecoderOptions& options,
               std::optional<TensorParallel> tp);
  std::optional<TensorParallel> tp_;
  WeightMap weights_;                   // this rank's share when sharded
  layers::RepackScope::Cache repacks_;  // int8 repacks of the weights, kept across rebuilds
  DecoderOptions options_;
  layers::Embedding embed_tokens_;
  std::vector<Block> blocks_;
  layers::RMSNorm norm_;
  std::optional<mx::array> embed_scale_;              // gemma
  std::optional<layers::Embedding> embed_positions_;  // gpt2
  // gpt2: h + wpe[position] for each row's own positions (left-padded rows start later).
  mx::array add_positions(const mx::array& h, const KVCache& cache) const;
  std::optional<layers::Linear> lm_head_;    // absent when tied to the embeddings
  std::optional<mx::array> tied_head_bias_;  // ernie4_5_moe: the tied head's own bias [vocab]
  // gemma4_text's per-layer inputs (Gemma4TextModel's embed_tokens_per_layer, per_layer_model_projection,
  // per_layer_projection_norm), and the last embed()'s output with its token ids: the inputs' token part needs the ids,
  // which forward_embeddings finds by the embeddings array it is given.
  struct PerLayerInputs {
    layers::Embedding table;
    layers::Linear projection;
    layers::RMSNorm norm;
  };
  std::optional<PerLayerInputs> per_layer_inputs_;
  mutable std::optional<std::pair<mx::array, mx::array>> last_embed_;  // (embeddings, token ids)
  // [B, T, layers, P] for `embeddings` (the output of the last embed()); [model] for other embeddings.
  mx::array per_layer_inputs(const mx::array& embeddings) const;
};

// Called by the registry on first use (explicit, so a static library cannot drop them).
void register_llama();  // llama, seed_oss
void register_mistral();
void register_qwen2();
void register_qwen3();
void register_gemma();    // gemma, gemma2, gemma3_text, gemma4_text
void register_phi3();     // phi3, phimoe
void register_granite();  // granite, granitemoe
void register_olmo2();
void register_smollm3();
void register_moe();  // mixtral, qwen2_moe, qwen3_moe, olmoe, dots1
void register_starcoder2();
void register_gpt2();
void register_gpt_oss();
void register_glm();     // glm, glm4, glm4_moe
void register_cohere();  // cohere, cohere2
void register_phi();
void register_stablelm();
void register_exaone4();
void register_ernie();    // ernie4_5, ernie4_5_moe, helium
void register_hunyuan();  // hunyuan_v1_dense, hunyuan_v1_moe
void register_gpt_neox();
void register_arcee();
void register_nemotron();
void register_apertus();
void register_deepseek();  // deepseek_v2, deepseek_v3, glm4_moe_lite
void register_llama4();    // llama4_text
void register_lfm2();
void register_qwen3_next();  // qwen3_next, qwen3_5_text, qwen3_5_moe_text

}  // namespace mlxgp
