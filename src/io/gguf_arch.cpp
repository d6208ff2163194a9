#include "io/gguf_arch.h"

#include <algorithm>
#include <variant>

#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::io {

namespace {

// llama.cpp's names shared by every architecture.
const std::pair<const char*, const char*> kLlamaNames[] = {
    {"attn_norm", "input_layernorm"},    {"ffn_norm", "post_attention_layernorm"},
    {"attn_q", "self_attn.q_proj"},      {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},      {"attn_output", "self_attn.o_proj"},
    {"attn_q_norm", "self_attn.q_norm"}, {"attn_k_norm", "self_attn.k_norm"},
    {"ffn_gate", "mlp.gate_proj"},       {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};

// Experts come stacked ([experts, out, in]), as models/moe.cpp's switch_mlp holds them.
const std::vector<std::pair<std::string, std::string>> kExperts = {
    {"ffn_gate_inp", "mlp.gate"},
    {"ffn_gate_exps", "mlp.switch_mlp.gate_proj"},
    {"ffn_up_exps", "mlp.switch_mlp.up_proj"},
    {"ffn_down_exps", "mlp.switch_mlp.down_proj"},
};

// Mixtral: llama files with experts (llama.cpp's llama architecture), under mixtral's block_sparse_moe.
const std::vector<std::pair<std::string, std::string>> kMixtral = {
    {"ffn_gate_inp", "block_sparse_moe.gate"},
    {"ffn_gate_exps", "block_sparse_moe.switch_mlp.gate_proj"},
    {"ffn_up_exps", "block_sparse_moe.switch_mlp.up_proj"},
    {"ffn_down_exps", "block_sparse_moe.switch_mlp.down_proj"},
};

std::vector<std::pair<std::string, std::string>> with(std::vector<std::pair<std::string, std::string>> a,
                                                      const std::vector<std::pair<std::string, std::string>>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// DeepSeek-V2 / V3 (llama.cpp's deepseek2): latent attention, whose kv_b_proj the converter splits per head into
// attn_k_b [heads, rank, nope] and attn_v_b [heads, v, rank] (mlx-lm's embed_q / unembed_out, joined again by
// deepseek_model_names; older files keep attn_kv_b), sigmoid routing's exp_probs_b, ungated shared experts.
const std::vector<std::pair<std::string, std::string>> kDeepseek2 =
    with(kExperts, {{"attn_q_a", "self_attn.q_a_proj"},
                    {"attn_q_a_norm", "self_attn.q_a_layernorm"},
                    {"attn_q_b", "self_attn.q_b_proj"},
                    {"attn_kv_a_mqa", "self_attn.kv_a_proj_with_mqa"},
                    {"attn_kv_a_norm", "self_attn.kv_a_layernorm"},
                    {"attn_kv_b", "self_attn.kv_b_proj"},
                    {"attn_k_b", "self_attn.embed_q"},
                    {"attn_v_b", "self_attn.unembed_out"},
                    {"exp_probs_b", "mlp.gate.e_score_correction_bias"},
                    {"ffn_gate_shexp", "mlp.shared_experts.gate_proj"},
                    {"ffn_up_shexp", "mlp.shared_experts.up_proj"},
                    {"ffn_down_shexp", "mlp.shared_experts.down_proj"}});

// Llama 4: the router (ffn_gate_inp) under the decoder's mlp.router, the ungated shared expert, dense layers' ffn_*.
const std::vector<std::pair<std::string, std::string>> kLlama4 = {
    {"ffn_gate_inp", "mlp.router"},
    {"ffn_gate_exps", "mlp.switch_mlp.gate_proj"},
    {"ffn_up_exps", "mlp.switch_mlp.up_proj"},
    {"ffn_down_exps", "mlp.switch_mlp.down_proj"},
    {"ffn_gate_shexp", "mlp.shared_expert.gate_proj"},
    {"ffn_up_shexp", "mlp.shared_expert.up_proj"},
    {"ffn_down_shexp", "mlp.shared_expert.down_proj"},
};

// Gemma's sandwich norms: llama.cpp's ffn_norm is the pre-MLP norm there.
const std::vector<std::pair<std::string, std::string>> kGemmaNorms = {
    {"ffn_norm", "pre_feedforward_layernorm"},
    {"post_attention_norm", "post_attention_layernorm"},
    {"post_ffw_norm", "post_feedforward_layernorm"},
};

// Gemma 4 (Gemma4Model's converter): gemma's sandwich norms, the experts' block beside the MLP (its norms, the router
// with its scales under router.*, fused or split gate / up projections), the layer scalar and the per-layer inputs.
const std::vector<std::pair<std::string, std::string>> kGemma4 =
    with(kGemmaNorms, {{"pre_ffw_norm_2", "pre_feedforward_layernorm_2"},
                       {"post_ffw_norm_1", "post_feedforward_layernorm_1"},
                       {"post_ffw_norm_2", "post_feedforward_layernorm_2"},
                       {"ffn_gate_inp", "router.proj"},
                       {"ffn_gate_up_exps", "experts.switch_mlp.gate_up_proj"},
                       {"ffn_gate_exps", "experts.switch_mlp.gate_proj"},
                       {"ffn_up_exps", "experts.switch_mlp.up_proj"},
                       {"ffn_down_exps", "experts.switch_mlp.down_proj"},
                       {"layer_output_scale", "layer_scalar"},
                       {"inp_gate", "per_layer_input_gate"},
                       {"proj", "per_layer_projection"},
                       {"post_norm", "post_per_layer_input_norm"}});

// Qwen3-Next / Qwen3.5 (Qwen3NextModel's converter and its Qwen3_5(Moe)TextModel subclasses): the delta nets' tensors
// under ssm_* and attn_qkv / attn_gate (in_proj_qkvz split into [q; k; v] and z: transformers' in_proj_qkv / in_proj_z
// layout), ssm_ba (qwen3next) or ssm_beta / ssm_alpha; ssm_a holds A = -exp(A_log) (read as linear_attn.A, hf_name);
// the pre-MLP norm is post_attention_norm; qwen2moe's expert and shared-expert names.
const std::vector<std::pair<std::string, std::string>> kQwen3Next =
    with(kExperts, {{"post_attention_norm", "post_attention_layernorm"},
                    {"attn_qkv", "linear_attn.in_proj_qkv"},
                    {"attn_gate", "linear_attn.in_proj_z"},
                    {"ssm_ba", "linear_attn.in_proj_ba"},
                    {"ssm_beta", "linear_attn.in_proj_b"},
                    {"ssm_alpha", "linear_attn.in_proj_a"},
                    {"ssm_conv1d", "linear_attn.conv1d"},
                    {"ssm_dt", "linear_attn.dt"},
                    {"ssm_norm", "linear_attn.norm"},
                    {"ssm_out", "linear_attn.out_proj"},
                    {"ffn_gate_shexp", "mlp.shared_expert.gate_proj"},
                    {"ffn_up_shexp", "mlp.shared_expert.up_proj"},
                    {"ffn_down_shexp", "mlp.shared_expert.down_proj"},
                    {"ffn_gate_inp_shexp", "mlp.shared_expert_gate"}});

// LFM2: llama.cpp's names for its blocks, the convolution under shortconv.*, the final norm read as token_embd_norm
// (gguf_model.cpp's hf_name).
const std::vector<std::pair<std::string, std::string>> kLfm2 = {{"attn_norm", "operator_norm"},
                                                                {"ffn_norm", "ffn_norm"},
                                                                {"attn_output", "self_attn.out_proj"},
                                                                {"attn_q_norm", "self_attn.q_layernorm"},
                                                                {"attn_k_norm", "self_attn.k_layernorm"},
                                                                {"ffn_gate", "feed_forward.w1"},
                                                                {"ffn_up", "feed_forward.w3"},
                                                                {"ffn_down", "feed_forward.w2"},
                                                                {"shortconv.conv", "conv.conv"},
                                                                {"shortconv.in_proj", "conv.in_proj"},
                                                                {"shortconv.out_proj", "conv.out_proj"}};

const std::vector<GgufArch>& table() {
  static const std::vector<GgufArch> t = {
      {"llama", "llama", {}},
      {"llama", "mixtral", kMixtral},  // (mixtral_config picks it: a llama file with llama.expert_count)
      {"mistral", "mistral", {}},
      {"qwen2", "qwen2", {}},
      {"qwen3", "qwen3", {}},
      {"qwen2moe", "qwen2_moe",
       with(kExperts, {{"ffn_gate_shexp", "mlp.shared_expert.gate_proj"},
                       {"ffn_up_shexp", "mlp.shared_expert.up_proj"},
                       {"ffn_down_shexp", "mlp.shared_expert.down_proj"},
                       {"ffn_gate_inp_shexp", "mlp.shared_expert_gate"}})},
      {"qwen3moe", "qwen3_moe", kExperts},
      // OLMoE: whole-projection q / k norms (attn_q_norm / attn_k_norm as olmo2's), experts unnormalised.
      {"olmoe", "olmoe", kExperts},
      {"phi3", "phi3", {{"attn_qkv", "self_attn.qkv_proj"}, {"ffn_up", "mlp.gate_up_proj"}}},
      {"starcoder2", "starcoder2", {{"ffn_up", "mlp.c_fc"}, {"ffn_down", "mlp.c_proj"}}},
      // LayerNorms with biases (attn_norm / ffn_norm .bias); stablelm's per-head q / k norms stacked [heads, head_dim]
      // by the converter as attn_q_norm / attn_k_norm.
      {"stablelm", "stablelm", {}},
      {"nemotron", "nemotron", {}},
      {"seed_oss", "seed_oss", {{"post_attention_norm", "post_attention_layernorm"}}},  // its pre-MLP norm
      {"granite", "granite", {}},
      {"smollm3", "smollm3", {}},
      // Command R / R+: one bias-free LayerNorm a block (attn_norm), per-head q / k norms [heads, head_dim], RoPE on
      // adjacent pairs of rows kept as transformers' (llama.cpp's NORM type).
      {"command-r", "cohere", {}},
      // Command R7B / A: command-r's blocks, a window and RoPE on three layers of four (llama.cpp's fixed pattern).
      {"cohere2", "cohere2", {}},
      // Hunyuan dense: per-head q / k norms after RoPE; the converter stores the NTK alpha as a stretched freq_base.
      {"hunyuan-dense",
       "hunyuan_v1_dense",
       {{"attn_q_norm", "self_attn.query_layernorm"}, {"attn_k_norm", "self_attn.key_layernorm"}}},
      // Hunyuan MoE (Hunyuan-A13B): hunyuan-dense's attention, every layer's experts under gate.wg beside the
      // shared_mlp.
      {"hunyuan-moe",
       "hunyuan_v1_moe",
       {{"attn_q_norm", "self_attn.query_layernorm"},
        {"attn_k_norm", "self_attn.key_layernorm"},
        {"ffn_gate_inp", "mlp.gate.wg"},
        {"ffn_gate_exps", "mlp.switch_mlp.gate_proj"},
        {"ffn_up_exps", "mlp.switch_mlp.up_proj"},
        {"ffn_down_exps", "mlp.switch_mlp.down_proj"},
        {"ffn_gate_shexp", "mlp.shared_mlp.gate_proj"},
        {"ffn_up_shexp", "mlp.shared_mlp.up_proj"},
        {"ffn_down_shexp", "mlp.shared_mlp.down_proj"}}},
      {"lfm2", "lfm2", kLfm2},
      // LFM2-MoE: lfm2's blocks, the experts stacked under feed_forward with exp_probs_b (expert_bias).
      {"lfm2moe", "lfm2_moe",
       with(kLfm2, {{"ffn_gate_inp", "feed_forward.gate"},
                    {"ffn_gate_exps", "feed_forward.switch_mlp.gate_proj"},
                    {"ffn_up_exps", "feed_forward.switch_mlp.up_proj"},
                    {"ffn_down_exps", "feed_forward.switch_mlp.down_proj"},
                    {"exp_probs_b", "feed_forward.expert_bias"}})},
      {"qwen3next", "qwen3_next", kQwen3Next},
      {"qwen35", "qwen3_5_text", kQwen3Next},
      {"qwen35moe", "qwen3_5_moe_text", kQwen3Next},
      {"arcee", "arcee", {}},
      // EXAONE 4.0: norms on the sub-layer outputs only, per-head q / k norms.
      {"exaone4",
       "exaone4",
       {{"post_attention_norm", "post_attention_layernorm"}, {"post_ffw_norm", "post_feedforward_layernorm"}}},
      // One llama.cpp architecture for both: softmax gating reads as deepseek_v2, sigmoid as deepseek_v3
      // (deepseek2_config picks).
      {"deepseek2", "deepseek_v2", kDeepseek2},
      {"deepseek2", "deepseek_v3", kDeepseek2},
      // Llama 4's rows as transformers' (its converter does not permute q / k: both rotate adjacent pairs).
      {"llama4", "llama4_text", kLlama4},
      {"ernie4_5", "ernie4_5", {}},  // its RoPE pairs adjacent features (llama.cpp's NORM), rows as transformers'
      // ERNIE 4.5 MoE: ernie4_5's attention, experts chosen with exp_probs_b (moe_statics' correction bias), ungated
      // shared experts.
      {"ernie4_5-moe", "ernie4_5_moe",
       with(kExperts, {{"exp_probs_b", "mlp.moe_statics.e_score_correction_bias"},
                       {"ffn_gate_shexp", "mlp.shared_experts.gate_proj"},
                       {"ffn_up_shexp", "mlp.shared_experts.up_proj"},
                       {"ffn_down_shexp", "mlp.shared_experts.down_proj"}})},
      // OLMo: no norm tensors at all (weightless LayerNorms), q / k rows permuted as LlamaModel's converter does.
      {"olmo", "olmo", {}},
      // OLMo 2: norms on the sub-layer outputs only; q / k norms over the whole projections.
      {"olmo2",
       "olmo2",
       {{"post_attention_norm", "post_attention_layernorm"}, {"post_ffw_norm", "post_feedforward_layernorm"}}},
      {"gemma2", "gemma2", kGemmaNorms},
      {"gemma3", "gemma3_text", kGemmaNorms},
      {"gemma4", "gemma4_text", kGemma4},
      // Weights already [out, in] (llama.cpp's converter transposes GPT-2's Conv1D), so these are the
      // decoder's names, which models/model_names.h passes through untransposed.
      {"gpt2", "gpt2", {{"attn_qkv", "self_attn.qkv_proj"}, {"ffn_up", "mlp.c_fc"}, {"ffn_down", "mlp.c_proj"}}},
      // GPTBigCode (StarCoder, SantaCoder): gpt2 with one key/value head (head_count_kv), attn_qkv [q; k; v].
      {"starcoder",
       "gpt_bigcode",
       {{"attn_qkv", "self_attn.qkv_proj"}, {"ffn_up", "mlp.c_fc"}, {"ffn_down", "mlp.c_proj"}}},
      // gpt-oss: the router with its bias, experts with biases (MXFP4 in llama.cpp's own files), per-head
      // sinks; post_attention_norm is the pre-MLP norm, transformers' post_attention_layernorm.
      {"gpt-oss",
       "gpt_oss",
       {{"ffn_gate_inp", "mlp.router"},
        {"ffn_gate_exps", "mlp.switch_mlp.gate_proj"},
        {"ffn_up_exps", "mlp.switch_mlp.up_proj"},
        {"ffn_down_exps", "mlp.switch_mlp.down_proj"},
        {"attn_sinks", "self_attn.sinks"},
        {"post_attention_norm", "post_attention_layernorm"}}},
  };
  return t;
}

// The LayerNorm epsilon of the architectures with LayerNorms (ModelConfig::rms_norm_eps holds either kind's).
float layer_norm_eps(const std::string& p, const GgufMeta& meta) {
  auto eps = gguf_number(meta, p + "attention.layer_norm_epsilon");
  if (!eps) fail("gguf", "metadata '" + p + "attention.layer_norm_epsilon' is missing");
  return static_cast<float>(*eps);
}

// The converter's attention.sliding_window_pattern (one bool a layer, true: windowed) with a window of `window`.
void window_pattern(const std::string& p, const GgufMeta& meta, ModelConfig& c, int window) {
  auto it = meta.find(p + "attention.sliding_window_pattern");
  const auto* pattern = it == meta.end() ? nullptr : std::get_if<mx::array>(&it->second);
  if (!pattern || pattern->ndim() != 1 || pattern->size() != static_cast<size_t>(c.num_hidden_layers))
    fail("gguf", "metadata '" + p + "attention.sliding_window_pattern' must list one bool a layer with a window");
  auto flags = mx::astype(*pattern, mx::bool_);
  mx::eval(flags);
  c.sliding_window = window;
  c.sliding_layers.assign(flags.data<bool>(), flags.data<bool>() + c.num_hidden_layers);
}

// EXAONE 4.0's windowed layers as llama.cpp reads them: attention.sliding_window_pattern, one bool a layer (the
// converter's reading of layer_types or EXAONE's "LLLG" letters); RoPE on those layers only, the global ones without
// (on every layer when there is no window), as Exaone4Attention does. Files from before those keys: llama.cpp fixed
// EXAONE 4.0 32B's (64 layers) window of 4096 on three layers of four in code, and so does this.
void exaone4_config(const std::string& p, const GgufMeta& meta, ModelConfig& c) {
  int window = gguf_count_or(meta, p + "attention.sliding_window", 0);
  auto it = meta.find(p + "attention.sliding_window_pattern");
  if (window < 1 && it == meta.end() && c.num_hidden_layers == 64) {
    c.sliding_window = 4096;
    for (int i = 0; i < c.num_hidden_layers; ++i) c.sliding_layers.push_back((i + 1) % 4 != 0);
    c.rope_layers = c.sliding_layers;
    return;
  }
  if (window < 1) return;
  window_pattern(p, meta, c, window);
  c.rope_layers = c.sliding_layers;
}

// Granite's four multipliers as llama.cpp's converter renames them (*_scale, each written only when non-zero) and
// llama.cpp reads them: no attention.scale means 1 / sqrt(head_dim), the others absent mean 1.
void granite_config(const std::string& p, const GgufMeta& meta, ModelConfig& c) {
  auto read = [&](const char* key) -> std::optional<float> {
    auto v = gguf_number(meta, p + key);
    if (!v) return std::nullopt;
    if (!(std::isfinite(*v) && *v > 0)) fail("gguf", "metadata '" + p + key + "' must be a finite number > 0");
    return static_cast<float>(*v);
  };
  c.attention_multiplier = read("attention.scale");
  c.embedding_multiplier = read("embedding_scale").value_or(1.0f);
  c.residual_multiplier = read("residual_scale").value_or(1.0f);
  c.logits_scaling = read("logit_scale").value_or(1.0f);
}

// expert_count and expert_used_count, the latter in [1, the former].
void expert_counts(const std::string& p, const GgufMeta& meta, ModelConfig& c) {
  c.num_experts = gguf_count(meta, p + "expert_count");
  c.num_experts_per_tok = gguf_count(meta, p + "expert_used_count");
  if (c.num_experts < 1 || c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.num_experts)
    fail("gguf", "metadata '" + p + "expert_used_count' must be in [1, '" + p + "expert_count']");
}

// llama.cpp's deepseek2: the latent widths (key_length / value_length are the cached latent's, rank + rope and
// rank; key_length_mla / value_length_mla the heads'; files from before the split hold only the heads' widths
// with attn_kv_b), dense leading blocks, experts, the gating function (softmax: DeepSeek-V2, sigmoid: V3 with
// exp_probs_b), group choice, and YaRN as llama.cpp applies it to this architecture (a softmax scale of
// (1 + yarn_log_multiplier ln factor)^2, cos / sin unscaled: transformers' mscale = mscale_all_dim).
void deepseek2_config(const std::string& p, const GgufMeta& meta,
                      const std::unordered_map<std::string, mx::array>& tensors, ModelConfig& c) {
  c.kv_lora_rank = gguf_count(meta, p + "attention.kv_lora_rank");
  c.q_lora_rank = gguf_count_or(meta, p + "attention.q_lora_rank", 0);
  c.qk_rope_head_dim = gguf_count(meta, p + "rope.dimension_count");
  const bool split = meta.count(p + "attention.key_length_mla") > 0;
  const int heads_k = split ? gguf_count(meta, p + "attention.key_length_mla") : c.head_dim;
  c.qk_nope_head_dim = heads_k - c.qk_rope_head_dim;
  c.v_head_dim =
      split ? gguf_count(meta, p + "attention.value_length_mla") : gguf_count(meta, p + "attention.value_length");
  if (c.kv_lora_rank <= 0 || c.qk_nope_head_dim <= 0 || c.v_head_dim <= 0 || c.qk_rope_head_dim % 2 != 0)
    fail("gguf", "inconsistent latent attention metadata ('" + p + "attention.kv_lora_rank', key / value lengths)");
  c.num_key_value_heads = 1;  // the cache's view (ModelConfig::kv_lora_rank)
  c.head_dim = c.kv_lora_rank + c.qk_rope_head_dim;
  c.partial_rotary_factor = 1.0f;
  c.rope_interleave = true;  // llama.cpp's NORM rope on adjacent pairs, the rows as transformers stores them
  expert_counts(p, meta, c);
  c.moe_intermediate_size = gguf_count(meta, p + "expert_feed_forward_length");
  c.shared_expert_intermediate_size = c.moe_intermediate_size * gguf_count_or(meta, p + "expert_shared_count", 0);
  const int dense = gguf_count_or(meta, p + "leading_dense_block_count", 0);
  for (int i = 0; i < dense && i < c.num_hidden_layers; ++i) c.mlp_only_layers.push_back(i);
  c.routed_scaling_factor = static_cast<float>(gguf_number(meta, p + "expert_weights_scale").value_or(1.0));
  if (!(std::isfinite(c.routed_scaling_factor) && c.routed_scaling_factor > 0))
    fail("gguf", "metadata '" + p + "expert_weights_scale' must be a finite number > 0");
  c.norm_topk_prob = gguf_number(meta, p + "expert_weights_norm").value_or(0.0) != 0.0;
  // llama.cpp's gating: 1 softmax (its default for deepseek2 files without the key), 2 sigmoid.
  const int gating = gguf_count_or(meta, p + "expert_gating_func", 1);
  if (gating != 1 && gating != 2)
    fail("gguf", "metadata '" + p + "expert_gating_func' = " + std::to_string(gating) +
                     " is not supported (1: softmax, 2: sigmoid)");
  c.model_type = gating == 2 ? "deepseek_v3" : "deepseek_v2";
  c.sigmoid_routing = gating == 2;
  c.n_group = gguf_count_or(meta, p + "expert_group_count", 1);
  c.topk_group = gguf_count_or(meta, p + "expert_group_used_count", c.n_group);
  if (c.n_group < 1 || c.num_experts % c.n_group != 0 || c.topk_group < 1 || c.topk_group > c.n_group)
    fail("gguf", "metadata '" + p + "expert_group_count' / '" + p + "expert_group_used_count' are inconsistent");
  // llama.cpp scores a group by its two best experts, as DeepSeek-V3 does; DeepSeek-V2's group-limited softmax by its
  // best one: softmax files with a group choice would run another model than transformers', so they are refused.
  if (gating == 1 && c.topk_group < c.n_group)
    fail("gguf", "softmax gating with a group choice ('" + p + "expert_group_used_count') is not supported");
  if (c.sigmoid_routing && !tensors.count("blk." + std::to_string(dense) + ".exp_probs_b.bias"))
    fail("gguf", "sigmoid gating needs each sparse layer's 'exp_probs_b.bias'");
  if (c.rope_scaling && c.rope_scaling->rope_type == "yarn") {
    const double log_mul = gguf_number(meta, p + "rope.scaling.yarn_log_multiplier").value_or(0.0);
    if (!std::isfinite(log_mul) || log_mul < 0)
      fail("gguf", "metadata '" + p + "rope.scaling.yarn_log_multiplier' must be a finite number >= 0");
    c.rope_scaling->mscale = c.rope_scaling->mscale_all_dim = static_cast<float>(log_mul / 0.1);
    c.rope_scaling->attention_factor = 1.0f;
  }
}
int rows_of(const std::unordered_map<std::string, mx::array>& tensors, const std::string& name, int axis) {
  auto it = tensors.find(name);
  return it == tensors.end() || static_cast<int>(it->second.ndim()) <= axis ? 0 : it->second.shape(axis);
}

void moe_config(const std::string& p, const GgufMeta& meta, const std::unordered_map<std::string, mx::array>& tensors,
                ModelConfig& c) {
  expert_counts(p, meta, c);
  c.moe_intermediate_size =
      gguf_count_or(meta, p + "expert_feed_forward_length", rows_of(tensors, "blk.0.ffn_gate_exps.weight", 1));
  if (c.moe_intermediate_size <= 0) fail("gguf", "metadata '" + p + "expert_feed_forward_length' is missing");
  if (c.intermediate_size == 0) c.intermediate_size = c.moe_intermediate_size;  // no dense layer reads it
  // llama.cpp runs every layer sparse (no decoder_sparse_step / mlp_only_layers in GGUF) and fixes the
  // top-k renormalisation per architecture: off for qwen2moe and olmoe, on for qwen3moe; gpt-oss takes a softmax over
  // the chosen logits (its SOFTMAX_WEIGHT gating), the same thing.
  c.norm_topk_prob = c.model_type == "qwen3_moe" || c.model_type == "gpt_oss";
  if (c.model_type == "qwen2_moe") {
    c.shared_expert_intermediate_size = gguf_count_or(meta, p + "expert_shared_feed_forward_length",
                                                      rows_of(tensors, "blk.0.ffn_gate_shexp.weight", 0));
    c.qkv_bias = tensors.count("blk.0.attn_q.bias") > 0;
  }
}

// llama.cpp's ernie4_5-moe: the experts from their keys, the layers after leading_dense_block_count sparse at every
// interleave_moe_layer_step-th (to the last: the files hold no end index); softmax gating whose choice adds
// exp_probs_b, the chosen probabilities renormalised, as Ernie4_5_MoeTopKRouter; the shared experts' width from their
// tensors.
void ernie45_moe_config(const std::string& p, const GgufMeta& meta,
                        const std::unordered_map<std::string, mx::array>& tensors, ModelConfig& c) {
  expert_counts(p, meta, c);
  c.moe_intermediate_size = gguf_count(meta, p + "expert_feed_forward_length");
  const int dense = gguf_count_or(meta, p + "leading_dense_block_count", 0);
  c.decoder_sparse_step = gguf_count_or(meta, p + "interleave_moe_layer_step", 1);
  if (c.moe_intermediate_size < 1 || c.decoder_sparse_step < 1)
    fail("gguf",
         "metadata '" + p + "expert_feed_forward_length' and '" + p + "interleave_moe_layer_step' must be at least 1");
  for (int i = 0; i < dense && i < c.num_hidden_layers; ++i) c.mlp_only_layers.push_back(i);
  int first = dense;  // the first sparse layer (a shared expert's tensor names its width)
  while (first < c.num_hidden_layers && (first + 1) % c.decoder_sparse_step != 0) ++first;
  // (from the tensor: the converter writes expert_shared_feed_forward_length as intermediate_size // head_count_kv)
  c.shared_expert_intermediate_size = rows_of(tensors, "blk." + std::to_string(first) + ".ffn_gate_shexp.weight", 0);
  c.softmax_score_bias = c.norm_topk_prob = true;
  c.moe_norm_min = 1e-12f;
}

// llama.cpp's hunyuan-moe (HunYuanMoEModel's converter): the experts from their keys, every layer sparse, softmax
// gating with the top-k renormalised beside the shared MLP, whose width its tensors give (the converter writes
// intermediate_size as expert_shared_feed_forward_length).
void hunyuan_moe_config(const std::string& p, const GgufMeta& meta,
                        const std::unordered_map<std::string, mx::array>& tensors, ModelConfig& c) {
  expert_counts(p, meta, c);
  c.moe_intermediate_size = gguf_count(meta, p + "expert_feed_forward_length");
  c.shared_expert_intermediate_size = rows_of(tensors, "blk.0.ffn_gate_shexp.weight", 0);
  if (c.moe_intermediate_size < 1 || c.shared_expert_intermediate_size < 1)
    fail("gguf", "hunyuan-moe needs '" + p + "expert_feed_forward_length' and blk.0.ffn_gate_shexp.weight");
  if (auto scale = gguf_number(meta, p + "expert_weights_scale"); scale && *scale != 1.0)
    fail("gguf", "metadata '" + p + "expert_weights_scale' other than 1 is not supported for hunyuan-moe");
  c.norm_topk_prob = true;
}

// llama.cpp's lfm2 (LFM2Model's converter): the convolution layers are those whose attention.head_count_kv is 0,
// over shortconv.l_cache positions; its MLP width is feed_forward_length as the converter computed it. LFM2.5's audio
// tokenizer's window (attention.sliding_window) is not read, so it is refused.
void lfm2_config(const std::string& p, const GgufMeta& meta, ModelConfig& c) {
  const auto kv = gguf_layer_counts(meta, p + "attention.head_count_kv", c.num_hidden_layers, c.num_key_value_heads);
  c.conv_layers.clear();
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    if (kv[i] != 0 && kv[i] != c.num_key_value_heads)
      fail("gguf", "metadata '" + p + "attention.head_count_kv' must be 0 (convolution) or one count on every layer");
    c.conv_layers.push_back(kv[i] == 0);
  }
  c.conv_kernel = gguf_count(meta, p + "shortconv.l_cache");
  if (c.conv_kernel < 1) fail("gguf", "metadata '" + p + "shortconv.l_cache' must be at least 1");
  if (meta.count(p + "attention.sliding_window"))
    fail("gguf", "metadata '" + p + "attention.sliding_window' is not supported for lfm2");
  c.hidden_act = "silu";
}

// llama.cpp's qwen3next / qwen35 / qwen35moe: the delta nets' widths from ssm.* (state_size the key heads' width,
// group_count the key heads, time_step_rank the value heads, inner_size all value heads' width, conv_kernel), every
// full_attention_interval-th layer attention (gated, as the converter leaves q_proj), the rest delta nets; qwen35's
// value heads in the converter's tiled order; the experts (every layer sparse, renormalised) beside a gated shared one.
void qwen3_next_config(const std::string& p, const GgufMeta& meta,
                       const std::unordered_map<std::string, mx::array>& tensors, ModelConfig& c) {
  // _Qwen35MtpMixin's multi-token-prediction block: nextn_predict_layers more blocks after the model's, which
  // llama.cpp's forward leaves out (as transformers drops mtp.*).
  const int nextn = gguf_count_or(meta, p + "nextn_predict_layers", 0);
  if (nextn < 0 || nextn >= c.num_hidden_layers)
    fail("gguf", "metadata '" + p + "nextn_predict_layers' must be below '" + p + "block_count'");
  c.num_hidden_layers -= nextn;
  c.linear_key_dim = gguf_count(meta, p + "ssm.state_size");
  c.linear_key_heads = gguf_count(meta, p + "ssm.group_count");
  c.linear_value_heads = gguf_count(meta, p + "ssm.time_step_rank");
  c.linear_conv_kernel = gguf_count(meta, p + "ssm.conv_kernel");
  const int inner = gguf_count(meta, p + "ssm.inner_size");
  if (c.linear_key_dim < 1 || c.linear_key_heads < 1 || c.linear_value_heads < 1 || c.linear_conv_kernel < 1 ||
      inner < 1 || inner % c.linear_value_heads != 0 || c.linear_value_heads % c.linear_key_heads != 0)
    fail("gguf", "metadata '" + p + "ssm.*' must give positive widths, value heads a multiple of the key heads");
  c.linear_value_dim = inner / c.linear_value_heads;
  c.linear_value_heads_tiled = c.model_type != "qwen3_next";
  const int interval = gguf_count(meta, p + "full_attention_interval");
  if (interval < 1) fail("gguf", "metadata '" + p + "full_attention_interval' must be at least 1");
  for (int i = 0; i < c.num_hidden_layers; ++i) c.linear_layers.push_back((i + 1) % interval != 0);
  c.attention_output_gate = true;
  c.hidden_act = "silu";
  if (c.model_type == "qwen3_5_text") return;
  expert_counts(p, meta, c);
  c.moe_intermediate_size = gguf_count(meta, p + "expert_feed_forward_length");
  c.shared_expert_intermediate_size =
      gguf_count_or(meta, p + "expert_shared_feed_forward_length", rows_of(tensors, "blk.0.ffn_gate_shexp.weight", 0));
  if (c.moe_intermediate_size < 1) fail("gguf", "metadata '" + p + "expert_feed_forward_length' must be positive");
  if (c.intermediate_size == 0) c.intermediate_size = c.moe_intermediate_size;  // no dense layer reads it
  c.norm_topk_prob = true;
}

// llama.cpp's lfm2moe (LFM2MoeModel's converter): lfm2's layers, leading_dense_block_count dense ones first, then
// experts chosen by sigmoid scores plus exp_probs_b, renormalised. llama.cpp applies no routed scaling (LFM2-8B-A1B's
// is 1): a file asking for another through expert_weights_scale is refused.
void lfm2moe_config(const std::string& p, const GgufMeta& meta,
                    const std::unordered_map<std::string, mx::array>& tensors, ModelConfig& c) {
  expert_counts(p, meta, c);
  c.moe_intermediate_size = gguf_count(meta, p + "expert_feed_forward_length");
  if (c.moe_intermediate_size < 1) fail("gguf", "metadata '" + p + "expert_feed_forward_length' must be positive");
  if (gguf_count_or(meta, p + "expert_gating_func", 2) != 2)
    fail("gguf", "metadata '" + p + "expert_gating_func' must be sigmoid (2) for lfm2moe");
  if (auto scale = gguf_number(meta, p + "expert_weights_scale"); scale && *scale != 1.0)
    fail("gguf", "metadata '" + p + "expert_weights_scale' is not supported (llama.cpp's lfm2moe ignores it)");
  const int dense = gguf_count_or(meta, p + "leading_dense_block_count", 0);
  for (int i = 0; i < dense && i < c.num_hidden_layers; ++i) c.mlp_only_layers.push_back(i);
  c.sigmoid_routing = c.norm_topk_prob = true;
  c.use_expert_bias =
      tensors.count("blk." + std::to_string(std::min(dense, c.num_hidden_layers - 1)) + ".exp_probs_b.bias") > 0;
  c.routed_scaling_factor = 1.0f;
}

// llama.cpp's llama4: the experts from their keys, sparse every interleave_moe_layer_step-th layer. What Llama 4's
// config.json sets beyond them the file does not hold: llama.cpp fixes it in code for Scout and Maverick alike (chunks
// of 8192 positions on three layers of four, the fourth without RoPE and with the query temperature of floor_scale
// 8192 and attn_scale 0.1; q / k norms unless the model has Maverick's 128 experts), as their configs have it.
void llama4_config(const std::string& p, const GgufMeta& meta, ModelConfig& c) {
  expert_counts(p, meta, c);
  c.moe_intermediate_size = c.shared_expert_intermediate_size = gguf_count(meta, p + "expert_feed_forward_length");
  c.decoder_sparse_step = gguf_count(meta, p + "interleave_moe_layer_step");
  if (c.moe_intermediate_size < 1 || c.decoder_sparse_step < 1)
    fail("gguf",
         "metadata '" + p + "expert_feed_forward_length' and '" + p + "interleave_moe_layer_step' must be positive");
  c.llama4_routing = true;
  // (Later llama.cpp builds read a window of 0 as no chunks; the build mlxgp is tested against reads none.)
  if (meta.count(p + "attention.sliding_window"))
    fail("gguf", "metadata '" + p + "attention.sliding_window' is not supported for llama4 (chunks of 8192 fixed)");
  c.attention_chunk_size = 8192;
  for (int i = 0; i < c.num_hidden_layers; ++i) c.rope_layers.push_back((i + 1) % 4 != 0);
  c.chunked_layers = c.rope_layers;
  c.llama4_scaling_beta = 0.1f;
  c.llama4_scaling_positions = 8192;
  c.llama4_scaling_nope = true;
  c.use_qk_norm = c.num_experts != 128;
}

void gemma_config(const std::string& p, const GgufMeta& meta, ModelConfig& c) {
  c.hidden_act = "gelu_pytorch_tanh";  // llama.cpp's gemma FFN: GELU, tanh approximation
  // llama.cpp stores no query_pre_attn_scalar: it scales by head_dim^-0.5, except for the 27B models
  // (gemma2: 46 layers, gemma3: 62) whose scalar is hidden_size / heads, as their HF configs say.
  const bool gemma2 = c.model_type == "gemma2";
  const bool large = c.num_hidden_layers == (gemma2 ? 46 : 62);
  c.query_pre_attn_scalar = static_cast<float>(large ? c.hidden_size / c.num_attention_heads : c.head_dim);
  // gemma2's caps default to llama.cpp's 50 / 30 when absent; gemma3 caps only the logits, if the file says so.
  auto attn_cap = gguf_number(meta, p + "attn_logit_softcapping");
  auto final_cap = gguf_number(meta, p + "final_logit_softcapping");
  if (gemma2) {
    c.attn_logit_softcapping = static_cast<float>(attn_cap.value_or(50.0));
    c.final_logit_softcapping = static_cast<float>(final_cap.value_or(30.0));
  } else {
    if (attn_cap)
      fail("gguf", "metadata '" + p + "attn_logit_softcapping' is not supported (llama.cpp's gemma3 ignores it)");
    if (final_cap && *final_cap != 0) c.final_logit_softcapping = static_cast<float>(*final_cap);
  }
  for (auto cap : {c.attn_logit_softcapping, c.final_logit_softcapping})
    if (cap && !(*cap > 0)) fail("gguf", "metadata '" + p + "*_logit_softcapping' must be > 0");
  // Sliding layers as llama.cpp fixes them: gemma2 every other layer from layer 0 (window 4096 when
  // absent); gemma3, when the file has a window, all but every 6th layer, on their own rope base 10000
  // without the global scaling.
  const std::string window_key = p + "attention.sliding_window";
  const int window = gguf_count_or(meta, window_key, gemma2 ? 4096 : 0);
  if (window < 1) {
    if (gemma2) fail("gguf", "metadata '" + window_key + "' must be at least 1");
    return;
  }
  c.sliding_window = window;
  c.sliding_layers.clear();
  for (int i = 0; i < c.num_hidden_layers; ++i) c.sliding_layers.push_back(gemma2 ? i % 2 == 0 : (i + 1) % 6 != 0);
  if (!gemma2) {
    c.sliding_rope_theta = 10000.0f;
    c.sliding_rope_scaling.reset();
  }
}

void gpt2_config(const std::string& p, const GgufMeta& meta, const std::unordered_map<std::string, mx::array>& tensors,
                 ModelConfig& c) {
  c.hidden_act = "gelu_new";  // llama.cpp's gpt2 and starcoder FFN: GELU, tanh approximation
  c.rms_norm_eps = layer_norm_eps(p, meta);
  // Learned positions: one row per position up to the training context, which llama.cpp stores as
  // context_length; a file whose table disagrees is refused rather than cut or read past its end.
  const int rows = rows_of(tensors, "position_embd.weight", 0);
  if (rows == 0) fail("gguf", "missing tensor 'position_embd.weight'");
  c.max_position_embeddings = gguf_count_or(meta, p + "context_length", rows);
  if (c.max_position_embeddings != rows)
    fail("gguf", "metadata '" + p + "context_length' (" + std::to_string(c.max_position_embeddings) +
                     ") differs from the rows of 'position_embd.weight' (" + std::to_string(rows) + ")");
  c.rope_layers.assign(c.num_hidden_layers, false);  // no RoPE anywhere
  c.attention_bias = tensors.count("blk.0.attn_qkv.bias") > 0;
  c.qkv_bias = c.attention_bias;  // the fused attn_qkv's bias (the generic attn_q.bias test finds none)
  c.mlp_bias = tensors.count("blk.0.ffn_up.bias") > 0;
  // GPT2Config's defaults for what GGUF does not store: 1/sqrt(head_dim) scores, no per-layer scaling.
  c.scale_attn_weights = true;
  c.scale_attn_by_inverse_layer_idx = false;
}

// A llama file with experts (Mixtral 8x7B / 8x22B as llama.cpp converts them): mixtral, top-k renormalised as
// llama.cpp's llama does, experts as wide as feed_forward_length. Older files with one tensor per expert
// (blk.N.ffn_gate.E.weight) are refused by name.
void mixtral_config(const std::string& p, const GgufMeta& meta,
                    const std::unordered_map<std::string, mx::array>& tensors, ModelConfig& c) {
  if (tensors.count("blk.0.ffn_gate.0.weight"))
    fail("gguf",
         "per-expert tensors (blk.N.ffn_gate.E.weight, older Mixtral files) are not supported; convert the "
         "model again with llama.cpp's convert_hf_to_gguf.py (stacked ffn_*_exps)");
  c.model_type = "mixtral";
  expert_counts(p, meta, c);
  c.moe_intermediate_size = c.intermediate_size;
}

// llama.cpp's fixed swa pattern n: the file's window (required) on every layer but each n-th (gpt-oss: n = 2, the
// even layers; cohere2: 4).
void windowed_layers(const std::string& p, const GgufMeta& meta, ModelConfig& c, int n) {
  const std::string key = p + "attention.sliding_window";
  const int window = gguf_count_or(meta, key, 0);
  if (window < 1) fail("gguf", "metadata '" + key + "' must be at least 1");
  c.sliding_window = window;
  c.sliding_layers.clear();
  for (int i = 0; i < c.num_hidden_layers; ++i) c.sliding_layers.push_back((i + 1) % n != 0);
}

// OlmoModel's converter: the LayerNorm epsilon, and clip_qkv as attention.clamp_kqv, which llama.cpp applies when > 0.
void olmo_config(const std::string& p, const GgufMeta& meta, ModelConfig& c) {
  c.rms_norm_eps = layer_norm_eps(p, meta);
  const std::string key = p + "attention.clamp_kqv";
  if (!meta.count(key)) return;
  const auto clamp = gguf_number(meta, key);
  if (!clamp || !std::isfinite(*clamp)) fail("gguf", "metadata '" + key + "' must be a finite number");
  if (*clamp > 0) c.clip_qkv = static_cast<float>(*clamp);
}

// llama.cpp's gemma4 (Gemma4Model's converter, llama_model_gemma4): the windowed layers from their pattern, the
// full-attention layers' widths (key_length, head_count_kv per layer) beside the windowed ones' (*_swa), values from
// the keys where a full layer has no attn_v (attention_k_eq_v), the layers sharing keys and values with their MLPs
// twice as wide (feed_forward_length per layer), per-layer inputs, the experts beside the MLP (softmax over all,
// top-k renormalised, as Gemma4TextRouter), and the full layers' proportional RoPE, which the converter stores as
// rope_freqs: 1 on the rotated pairs, 1e30 on the others (no rotation; ggml's NEOX rope over the whole head).
void gemma4_config(const std::string& p, const GgufMeta& meta,
                   const std::unordered_map<std::string, mx::array>& tensors, ModelConfig& c) {
  const int n = c.num_hidden_layers;
  c.hidden_act = "gelu_pytorch_tanh";
  const int window = gguf_count(meta, p + "attention.sliding_window");
  if (window < 1) fail("gguf", "metadata '" + p + "attention.sliding_window' must be at least 1");
  window_pattern(p, meta, c, window);
  const int full_dim = c.head_dim, swa_dim = gguf_count(meta, p + "attention.key_length_swa");
  if (gguf_count_or(meta, p + "attention.value_length", full_dim) != full_dim ||
      gguf_count_or(meta, p + "attention.value_length_swa", swa_dim) != swa_dim)
    fail("gguf", "gemma4 needs value lengths equal to the key lengths ('" + p + "attention.value_length*')");
  if (gguf_count_or(meta, p + "rope.dimension_count", full_dim) != full_dim ||
      gguf_count_or(meta, p + "rope.dimension_count_swa", swa_dim) != swa_dim)
    fail("gguf", "gemma4 rotates whole heads ('" + p + "rope.dimension_count*' must be the key lengths)");
  if (full_dim <= 0 || swa_dim <= 0 || full_dim % 2 != 0 || swa_dim % 2 != 0)
    fail("gguf", "gemma4's key lengths must be even and positive");
  c.head_dim = swa_dim;
  c.partial_rotary_factor = 1.0f;
  const auto kv = gguf_layer_counts(meta, p + "attention.head_count_kv", n, c.num_attention_heads);
  for (int i = 0; i < n; ++i) {
    const bool sliding = c.sliding_layers[i];
    c.layer_head_dims.push_back(sliding ? swa_dim : full_dim);
    c.layer_kv_heads.push_back(kv[i]);
    if (kv[i] <= 0 || c.num_attention_heads % kv[i] != 0)
      fail("gguf",
           "metadata '" + p + "attention.head_count_kv' of layer " + std::to_string(i) + " must divide the head count");
  }
  // (a windowed layer's count, the model's own; layer_kv_heads holds every layer's)
  auto sliding = std::find(c.sliding_layers.begin(), c.sliding_layers.end(), true);
  c.num_key_value_heads = kv[sliding == c.sliding_layers.end() ? 0 : sliding - c.sliding_layers.begin()];
  // Sharing: llama.cpp reuses the cache of the layer just before the shared ones for full layers and of the one
  // before that for windowed ones; transformers the last earlier layer of the same kind. They agree (and mlxgp runs
  // the file) when those two layers are a windowed one followed by a full one, as in Gemma 4 E2B / E4B.
  const int shared = gguf_count_or(meta, p + "attention.shared_kv_layers", 0), first = n - shared;
  if (shared > 0 && (first < 2 || !c.sliding_layers[first - 2] || c.sliding_layers[first - 1]))
    fail("gguf", "metadata '" + p +
                     "attention.shared_kv_layers': layers sharing keys and values need a windowed then "
                     "a full layer just before them (llama.cpp's fixed reuse)");
  c.num_kv_shared_layers = shared;
  const auto ff = gguf_layer_counts(meta, p + "feed_forward_length", n);
  c.intermediate_size = ff[0];
  c.double_wide_mlp = shared > 0 && ff[n - 1] == 2 * ff[0];
  for (int i = 0; i < n; ++i)
    if (ff[i] != (c.double_wide_mlp && i >= first ? 2 : 1) * ff[0])
      fail("gguf", "metadata '" + p +
                       "feed_forward_length' must be one width, or twice it on the layers sharing "
                       "keys and values");
  for (int i = 0; i < first; ++i)  // llama.cpp's V = K where a layer has no attn_v; transformers' on full layers only
    if (!tensors.count("blk." + std::to_string(i) + ".attn_v.weight")) {
      if (c.sliding_layers[i]) fail("gguf", "windowed layer " + std::to_string(i) + " of a gemma4 file has no attn_v");
      c.attention_k_eq_v = true;
    }
  c.per_layer_input_size = gguf_count(meta, p + "embedding_length_per_layer_input");
  if (c.per_layer_input_size > 0) {
    c.per_layer_input_vocab = rows_of(tensors, "per_layer_token_embd.weight", 0);
    if (c.per_layer_input_vocab != c.vocab_size)
      fail("gguf", "tensor 'per_layer_token_embd.weight' must have a row for each of the vocabulary's tokens");
  }
  if (auto cap = gguf_number(meta, p + "final_logit_softcapping"); cap && *cap != 0) {
    if (!(*cap > 0)) fail("gguf", "metadata '" + p + "final_logit_softcapping' must be > 0");
    c.final_logit_softcapping = static_cast<float>(*cap);
  }
  if (tensors.count("blk.0.ffn_gate_inp.weight")) {
    expert_counts(p, meta, c);
    c.moe_intermediate_size = gguf_count(meta, p + "expert_feed_forward_length");
    if (c.moe_intermediate_size < 1) fail("gguf", "metadata '" + p + "expert_feed_forward_length' must be positive");
    c.norm_topk_prob = true;
  }
  if (c.rope_scaling) fail("gguf", "rope scaling keys are not supported for gemma4 (proportional RoPE only)");
  c.sliding_rope_theta =
      static_cast<float>(gguf_number(meta, p + "rope.freq_base_swa").value_or(static_cast<double>(c.rope_theta)));
  if (!(*c.sliding_rope_theta > 0)) fail("gguf", "metadata '" + p + "rope.freq_base_swa' must be > 0");
  if (std::all_of(c.sliding_layers.begin(), c.sliding_layers.end(), [](bool b) { return b; })) return;
  auto freqs = tensors.find("rope_freqs.weight");
  if (freqs == tensors.end() || freqs->second.ndim() != 1 || freqs->second.shape(0) != full_dim / 2 ||
      !mx::issubdtype(freqs->second.dtype(), mx::floating))
    fail("gguf", "gemma4's full-attention layers need tensor 'rope_freqs.weight' of " + std::to_string(full_dim / 2) +
                     " floats");
  auto f = mx::astype(freqs->second, mx::float32, mx::Device::cpu);
  mx::eval(f);
  const float* v = f.data<float>();
  int rotated = 0;
  while (rotated < full_dim / 2 && v[rotated] == 1.0f) ++rotated;
  for (int i = rotated; i < full_dim / 2; ++i)
    if (!(v[i] >= 1e20f))  // (an angle of at most position x 1e-20: none)
      fail("gguf", "tensor 'rope_freqs.weight' of gemma4 must be 1 on the rotated pairs then 1e30 (proportional RoPE)");
  RopeScaling s;
  s.rope_type = "proportional";
  s.partial_rotary_factor = static_cast<float>(2 * rotated) / static_cast<float>(full_dim);
  c.rope_scaling = s;
}

}  // namespace

const GgufArch& gguf_arch(const std::string& gguf) {
  std::string list;
  const std::string* previous = nullptr;
  for (auto& a : table()) {
    if (a.gguf == gguf) return a;
    if (!previous || *previous != a.gguf) list += (list.empty() ? "" : ", ") + a.gguf;  // (deepseek2 twice)
    previous = &a.gguf;
  }
  fail("model", "unknown model_type '" + gguf + "' (supported GGUF architectures: " + list + ")");
}

const GgufArch& gguf_arch_of(const std::string& model_type) {
  for (auto& a : table())
    if (a.model_type == model_type) return a;
  fail("model", "model_type '" + model_type + "' has no GGUF architecture");
}

std::string gguf_block_module(const GgufArch& arch, const std::string& part) {
  for (auto& [g, h] : arch.block_names)
    if (part == g) return h;
  for (auto& [g, h] : kLlamaNames)
    if (part == g) return h;
  return "";
}

void gguf_arch_config(const GgufArch& arch, const GgufMeta& meta,
                      const std::unordered_map<std::string, mx::array>& tensors, ModelConfig& c) {
  const std::string p = arch.gguf + ".";
  const std::string& t = c.model_type;
  if (t == "qwen2_moe" || t == "qwen3_moe" || t == "gpt_oss" || t == "olmoe") moe_config(p, meta, tensors, c);
  if (t == "llama" && gguf_count_or(meta, p + "expert_count", 0) > 0) mixtral_config(p, meta, tensors, c);
  if (t == "deepseek_v2") deepseek2_config(p, meta, tensors, c);
  if (t == "llama4_text") llama4_config(p, meta, c);
  if (t == "ernie4_5_moe") ernie45_moe_config(p, meta, tensors, c);
  if (t == "hunyuan_v1_moe") hunyuan_moe_config(p, meta, tensors, c);
  if (t == "lfm2" || t == "lfm2_moe") lfm2_config(p, meta, c);
  if (t == "lfm2_moe") lfm2moe_config(p, meta, tensors, c);
  if (t == "qwen3_next" || t == "qwen3_5_text" || t == "qwen3_5_moe_text") qwen3_next_config(p, meta, tensors, c);
  if (t == "gpt_oss") {
    // llama.cpp's gpt-oss: every even layer slides (its swa pattern 2), biases on q/k/v/o, the clamped
    // SwiGLU's 1.702 / 7.0 fixed in code (GptOssConfig's defaults, which ModelConfig holds).
    windowed_layers(p, meta, c, 2);
    c.attention_bias = true;
  }
  if (t == "gemma2" || t == "gemma3_text") gemma_config(p, meta, c);
  if (t == "gemma4_text") gemma4_config(p, meta, tensors, c);
  if (t == "starcoder2") {
    c.hidden_act = "gelu_pytorch_tanh";  // llama.cpp's starcoder2 FFN: GELU, tanh approximation
    c.rms_norm_eps = layer_norm_eps(p, meta);
    c.attention_bias = tensors.count("blk.0.attn_q.bias") > 0;
    c.mlp_bias = tensors.count("blk.0.ffn_up.bias") > 0;
  }
  if (t == "gpt2" || t == "gpt_bigcode") gpt2_config(p, meta, tensors, c);
  if (t == "olmo") olmo_config(p, meta, c);
  // LayerNorms (nemotron's LayerNorm1P) with their own epsilon.
  if (t == "stablelm" || t == "nemotron" || t == "cohere" || t == "cohere2") c.rms_norm_eps = layer_norm_eps(p, meta);
  if (t == "stablelm") {
    // As llama.cpp (and transformers' reader) decide: parallel blocks have no ffn_norm; the per-head q / k norms
    // are there or not.
    c.parallel_residual = !tensors.count("blk.0.ffn_norm.weight");
    c.use_qk_norm = rows_of(tensors, "blk.0.attn_q_norm.weight", 1) > 0;
  }
  if (t == "nemotron" || t == "arcee") c.hidden_act = "relu2";  // llama.cpp's FFN there: relu(x)^2, ungated
  if (t == "granite") granite_config(p, meta, c);
  if (t == "exaone4") exaone4_config(p, meta, c);
  if (t == "cohere" || t == "cohere2") {  // CommandR2Model's and Cohere2Model's converters write the logit scale always
    auto scale = gguf_number(meta, p + "logit_scale");
    if (!scale || !(std::isfinite(*scale) && *scale > 0))
      fail("gguf", "metadata '" + p + "logit_scale' must be present and a finite number > 0");
    c.logit_scale = static_cast<float>(*scale);
    c.use_qk_norm = t == "cohere" && rows_of(tensors, "blk.0.attn_q_norm.weight", 1) > 0;
  }
  if (t == "cohere2") {
    // llama.cpp's cohere2: the file's window on every layer but each 4th (its swa pattern 4), RoPE on those alone.
    windowed_layers(p, meta, c, 4);
    c.rope_layers = c.sliding_layers;
  }
  // SmolLM3's files carry no no_rope_layers: llama.cpp leaves RoPE out of every 4th layer, SmolLM3Config's default.
  if (t == "smollm3")
    for (int i = 0; i < c.num_hidden_layers; ++i) c.rope_layers.push_back((i + 1) % 4 != 0);
  // OLMo 3's files are olmo2 with a window and a per-layer pattern; their layout is not read here yet.
  if (t == "olmo2" && meta.count(p + "attention.sliding_window"))
    fail("gguf", "metadata '" + p + "attention.sliding_window' is not supported (OLMo 3's sliding layers)");
  if (t == "phi3") {
    // llama.cpp switches LongRoPE factors by the context size it was started with, transformers by the
    // running length; mlxgp's longrope is transformers', so such files are refused rather than guessed.
    for (auto* n : {"rope_factors_long.weight", "rope_factors_short.weight"})
      if (tensors.count(n)) fail("gguf", std::string("phi3 LongRoPE (tensor '") + n + "') is not supported");
    // phi3.attention.sliding_window is ignored, as llama.cpp ignores it (Phi-3's sliding window is off
    // there) and transformers' GGUF reader does.
  }
}

}  // namespace mlxgp::io
