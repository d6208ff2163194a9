// Mixture-of-experts feed-forward (mixtral, qwen2_moe, qwen3_moe, gpt_oss): a softmax router picks the top-k
// experts per token; the experts' SwiGLU runs through MLX's gather matmuls (gather_mm, or gather_qmm on
// quantized experts), so each token touches only its k experts, never a loop over all of them.
// Expert weights are kept stacked [experts, out, in] under mlx-lm's names (`switch_mlp.gate_proj` ...);
// HF folders' per-expert tensors are stacked into them at load (stack_experts).
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "models/layers.h"

namespace mx = mlx::core;

namespace mlxgp::layers {

// One projection of every expert: weight [E, out, in] (or MLX-quantized, as Linear), applied to the
// experts `indices` names for each token.
struct SwitchLinear {
  std::optional<mx::array> weight, scales, biases;
  int group_size = 0, bits = 0;
  // llama.cpp blocks kept as stored (GGUF ffn_*_exps): weight uint8 [E, out, row bytes].
  std::optional<uint32_t> ggml_type;
  bool int8_activations = false;  // as Linear's
  std::optional<mx::array> bias;  // [E, out] (gpt_oss), added to each chosen expert's output
  // MLX quantization mode: "affine" (scales and biases) or a microscaling one (uint8 scales, no biases:
  // layers::microscaling_mode; gpt-oss's original expert tensors are mxfp4).
  std::string mode = "affine";
  static SwitchLinear load(const WeightMap& w, const std::string& prefix, int experts, int in, int out,
                           bool with_bias = false);
  // x [..., 1, 1, in], indices [..., k] -> [..., k, 1, out]
  mx::array operator()(const mx::array& x, const mx::array& indices) const;

 private:
  mx::array product(const mx::array& x, const mx::array& indices) const;  // without the bias
};

struct MoeOptions {
  // mixtral: block_sparse_moe.experts.E.{w1, w3, w2}; qwen*_moe: mlp.experts.E.{gate, up, down}_proj.
  bool mixtral_names = false;
  // gpt_oss: mlp.router with a bias; experts with biases (stacked at load by gpt_oss_model_names, from
  // transformers' gate_up_proj or the MXFP4 blocks); the clamped SwiGLU of swiglu_alpha / swiglu_limit.
  bool gpt_oss = false;
  // The always-on expert's module: qwen2_moe's shared_expert behind a sigmoid gate (shared_expert_gate);
  // glm4_moe's shared_experts, ungated.
  const char* shared_expert = "shared_expert";
  bool shared_expert_gate = true;
  const char* router = "gate";  // the router's module (gpt_oss: router; granitemoe: router.layer)
  // gemma4_text: the experts under model.layers.N.experts (the `prefix`), the router beside them
  // (model.layers.N.router: proj, scale, per_expert_scale; Gemma4TextRouter).
  bool gemma4 = false;
  // lfm2_moe: the block's module (model.layers.N.<block>; nullptr: mlp, or mixtral's block_sparse_moe), and its
  // experts' projections named w1 / w3 / w2 as mixtral's (without mixtral's widths or its forced renormalisation).
  const char* block = nullptr;
  bool w_names = false;
  // The sigmoid router's renormalisation: sum + renorm_eps (glm4_moe / deepseek_v3: 1e-20; lfm2_moe: 1e-6).
  float renorm_eps = 1e-20f;
};

// The module of a layer's sparse block under model.layers.N (mlp, block_sparse_moe, or MoeOptions::block).
std::string moe_block(const MoeOptions& o);

// The reverse of stack_experts (HF's per-expert tensors, for writing checkpoints transformers reads):
// `<module>.switch_mlp.<proj>.<suffix>` [E, ...] -> `<module>.experts.<e>.<proj>.<suffix>`, mixtral's
// projections named w1 / w3 / w2.
void unstack_experts(WeightMap& w, bool mixtral_names);

struct SparseMoe {
  Linear router;  // [experts, hidden], no bias
  SwitchLinear gate_proj, up_proj, down_proj;
  SwiGLU::Act act = SwiGLU::Act::Silu;
  int top_k = 2;
  bool renormalize = false;
  std::optional<SwiGLU> shared_expert;                    // qwen2_moe
  std::optional<Linear> shared_expert_gate;               // sigmoid gate on the shared expert, [1, hidden]
  std::optional<std::pair<float, float>> clamped_swiglu;  // gpt_oss: (alpha, limit)
  // glm4_moe's sigmoid routing (ModelConfig::sigmoid_routing): the router's e_score_correction_bias [experts];
  // ernie4_5_moe's softmax routing adds its moe_statics' to the probabilities for the choice (softmax_score_bias).
  bool sigmoid_scores = false;
  std::optional<mx::array> score_bias;
  float norm_min = 0.0f;  // ernie4_5_moe: renormalised by max(sum, norm_min)
  // Group-limited choice (topk_group < n_group): glm4_moe / deepseek_v3 score groups by their two best biased
  // sigmoid scores, deepseek_v2 (group_limited_greedy) by their best softmax probability.
  int n_group = 1, topk_group = 1;
  float routed_scaling = 1.0f;  // deepseek / glm4_moe: the chosen weights' multiplier
  float renorm_eps = 1e-20f;    // MoeOptions::renorm_eps
  bool float32_router = false;  // the router's weights and logits in float32 (transformers keeps gate.weight so)
  // llama4_text (ModelConfig::llama4_routing): top-k of the raw logits; each chosen expert takes the token times
  // the sigmoid of its logit, and their outputs are summed as they are.
  bool scaled_inputs = false;
  // gemma4_text (Gemma4TextRouter): the router reads the weightless RMSNorm (eps router_eps) of its input times
  // router_scale [hidden] and hidden^-0.5; the chosen renormalised probabilities are multiplied by
  // per_expert_scale [experts].
  std::optional<mx::array> router_scale, per_expert_scale;
  float router_eps = 1e-6f;
  // phimoe (ModelConfig::sparsemixer): its threshold, router_jitter_noise; nullopt for the other routers.
  std::optional<float> sparsemixer_eps;
  // Tensor parallelism: each expert (and the shared one) holds this rank's share of its features; the
  // block's output is summed over the group once.
  std::optional<mx::distributed::Group> reduce;
  std::optional<mx::array> shared_down_bias;  // sharded: the shared expert's down_proj bias, added after the sum
  // `prefix`: the block's feed-forward module (model.layers.N.mlp or .block_sparse_moe).
  static SparseMoe load(const WeightMap& w, const std::string& prefix, const ModelConfig& c, const MoeOptions& o);
  mx::array operator()(const mx::array& x) const;
  // The experts run on x, routed by `route_on` (gemma4_text routes the block's residual and feeds the experts
  // its pre_feedforward_layernorm_2).
  mx::array operator()(const mx::array& x, const mx::array& route_on) const;

 private:
  // (expert indices [..., top_k], their weights in float32) for each token of x.
  std::pair<mx::array, mx::array> route(const mx::array& x) const;
  std::pair<mx::array, mx::array> sparsemixer(const mx::array& logits) const;
  // The chosen experts' summed outputs given route()'s choice ([..., top_k]; weights in x's dtype): weighted by
  // the weights, or (scaled_inputs) fed the token scaled by them.
  mx::array weighted_experts(const mx::array& x, const mx::array& indices, const mx::array& weights) const;
  mx::array scaled_input_experts(const mx::array& x, const mx::array& indices, const mx::array& weights) const;
};

// Replaces HF's per-expert tensors (`prefix.experts.E.<proj>.<suffix>`) by one stacked tensor per
// projection under `prefix.switch_mlp.<gate|up|down>_proj.<suffix>`, for every MoE layer in `w`.
// Already-stacked (mlx-lm) checkpoints pass through unchanged.
void stack_experts(WeightMap& w, const ModelConfig& c, const MoeOptions& o);

// Whether layer `i` has a sparse MoE block (qwen*_moe's decoder_sparse_step and mlp_only_layers).
bool is_moe_layer(const ModelConfig& c, int i);

}  // namespace mlxgp::layers
