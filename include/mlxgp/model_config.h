// ModelConfig: the HF config.json fields this project reads, with HF names and defaults.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mlxgp {

// HF `rope_scaling` / `rope_parameters`: "linear", "llama3", "longrope" (Phi-3's, alias "su"), "yarn" and
// "proportional".
struct RopeScaling {
  std::string rope_type = "default";
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
  // longrope: per-frequency divisors below / above original_max_position_embeddings, and the cos/sin
  // multiplier (absent: sqrt(1 + ln(factor) / ln(original_max_position_embeddings)), as transformers).
  std::vector<float> short_factor, long_factor;
  std::optional<float> attention_factor;
  // phimoe's longrope: the cos/sin multiplier below / above original_max_position_embeddings, in place of
  // attention_factor (transformers' PhimoeRotaryEmbedding; both required there).
  std::optional<float> short_mscale, long_mscale;
  // yarn (transformers' _compute_yarn_parameters): the ramp between the beta_fast and beta_slow rotation
  // counts, truncated to whole dims unless `truncate` is false; attention_factor absent: from factor, or
  // from mscale / mscale_all_dim when both are set (DeepSeek's).
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  std::optional<float> mscale, mscale_all_dim;
  bool truncate = true;
  // proportional (gemma4_text's full-attention layers): frequencies base^(-2i / head_dim) on the first
  // partial_rotary_factor x head_dim / 2 pairs of rotate_half's (i, i + head_dim / 2), none on the rest.
  float partial_rotary_factor = 1.0f;
};

// MLX quantized checkpoints: config.json "quantization": {"group_size": 64, "bits": 4, "mode": "affine"}.
// mode: "affine" (float scales and biases per group, 2-8 bits) or one of MLX's microscaling formats (one
// uint8 scale per group, no biases): "mxfp4" (4-bit e2m1, e8m0 scales, groups of 32), "mxfp8" (8-bit e4m3,
// e8m0 scales, groups of 32), "nvfp4" (4-bit e2m1, e4m3 scales, groups of 16).
struct QuantizationConfig {
  int group_size = 64;
  int bits = 4;
  std::string mode = "affine";
};

// The (group_size, bits) a quantization mode defaults to (mlx.nn's _defaults_for_mode): affine 64 / 4 (it takes
// 2-8 bits in groups of 32 / 64 / 128), mxfp4 32 / 4, mxfp8 32 / 8, nvfp4 16 / 4 (each microscaling mode takes
// only its own pair); nullopt for a name MLX does not have.
std::optional<std::pair<int, int>> quantization_mode_defaults(const std::string& mode);

struct ModelConfig {
  std::string model_type;  // HF model_type (models/registry.cpp lists the supported ones)
  // A multimodal checkpoint's own model_type ("gemma3", "mistral3") when this is its language model (the
  // fields above and below are its text_config's, model_type included); empty otherwise. Its tensors carry
  // the "language_model." prefix in checkpoint files (mlxgp/checkpoint_names.h).
  std::string multimodal_model_type;
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;  // 0 in JSON -> num_attention_heads
  int head_dim = 0;             // 0 in JSON -> hidden_size / num_attention_heads
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  std::optional<RopeScaling> rope_scaling;
  int max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // qwen2 forces q/k/v bias on
  bool mlp_bias = false;
  bool lm_head_bias = false;  // phimoe's and ernie4_5_moe's switch (phi's head always has one)
  std::optional<int> sliding_window;
  // Per layer: whether it attends within sliding_window (transformers' "sliding_attention" layers:
  // every mistral layer, qwen2/qwen3 layers from layer_types or >= max_window_layers). Empty: none.
  std::vector<bool> sliding_layers;
  std::string hidden_act = "silu";
  std::optional<int> bos_token_id;
  std::vector<int> eos_token_id;  // config.json allows an int or a list
  std::optional<int> pad_token_id;
  std::optional<QuantizationConfig> quantization;

  // Architecture extras (gemma*, phi3, granite, olmo2, smollm3); the defaults change nothing.
  float partial_rotary_factor = 1.0f;  // rotary dims = head_dim * factor (phi3)
  // gemma3: the sliding layers' own rope (rope_parameters.sliding_attention / rope_local_base_freq).
  std::optional<float> sliding_rope_theta;
  std::optional<RopeScaling> sliding_rope_scaling;
  std::optional<float> query_pre_attn_scalar;    // gemma2/3: attention scale = scalar^-0.5
  std::optional<float> attn_logit_softcapping;   // gemma2/3: scores = cap * tanh(scores / cap)
  std::optional<float> final_logit_softcapping;  // gemma2/3: logits = cap * tanh(logits / cap)
  // granite: inputs x embedding_multiplier, block outputs x residual_multiplier, attention scale
  // attention_multiplier, logits / logits_scaling.
  float embedding_multiplier = 1.0f, residual_multiplier = 1.0f, logits_scaling = 1.0f;
  std::optional<float> attention_multiplier;
  // cohere / cohere2: logits x logit_scale.
  std::optional<float> logit_scale;
  // The config's use_qk_norm (cohere: a bias-free LayerNorm over head_dim on q and k with weights per head,
  // [heads, head_dim]; glm4_moe: RMSNorm over head_dim as qwen3's; llama4_text: a weightless RMSNorm on q and k after
  // RoPE, on the rotary layers alone), read for those architectures.
  bool use_qk_norm = false;
  // stablelm's use_parallel_residual: x + attention(n) + mlp(n) with the one input_layernorm.
  bool parallel_residual = false;
  std::vector<bool> rope_layers;  // smollm3 no_rope_layers (1 = rotary); empty: every layer rotates
  // ministral3 (rope_parameters' llama_4_scaling_beta and original_max_position_embeddings): queries at position
  // p are multiplied by 1 + beta * log(1 + floor(p / positions)) after RoPE (transformers'
  // get_llama_4_attn_scale); 1 below `positions`.
  std::optional<float> llama4_scaling_beta;
  int llama4_scaling_positions = 0;
  // llama4_text's attn_temperature_tuning (attn_scale as the beta, floor_scale as the positions): the same scale,
  // on the layers without RoPE alone and counting positions from 1 (1 + beta * log(1 + floor((p + 1) / positions))).
  bool llama4_scaling_nope = false;
  // llama4_text's chunked attention: on the layers chunked_layers marks, a query sees the keys of its own
  // attention_chunk_size-long chunk of positions alone (transformers' chunked_causal_mask_function).
  std::optional<int> attention_chunk_size;
  std::vector<bool> chunked_layers;
  // gemma4_text (transformers' per_layer_config): each layer's head_dim and num_key_value_heads where they differ
  // from the fields above (its full-attention layers: global_head_dim, num_global_key_value_heads); empty: none
  // differs. layer_head_dim / layer_kv_heads read them.
  std::vector<int> layer_head_dims, layer_kv_heads;
  // gemma4_text's attention_k_eq_v: the full-attention layers have no v_proj; their values are the key projection
  // (before k_norm).
  bool attention_k_eq_v = false;
  // gemma4_text (Gemma 4 E2B / E4B): per-layer inputs of hidden_size_per_layer_input features for every layer, from
  // the token's own embedding (embed_tokens_per_layer, vocab_size_per_layer_input rows) and a projection of its
  // embedding (Gemma4TextModel's get_per_layer_inputs / project_per_layer_inputs); 0: none.
  int per_layer_input_size = 0, per_layer_input_vocab = 0;
  // gemma4_text: the last num_kv_shared_layers layers compute no keys or values of their own; each attends to those of
  // the last earlier layer of its type (sliding or full). use_double_wide_mlp: their MLPs are twice intermediate_size.
  int num_kv_shared_layers = 0;
  bool double_wide_mlp = false;
  // A gemma4 multimodal checkpoint's image / video / audio placeholder ids, which its Gemma4Model embeds (and looks up
  // per-layer inputs for) as multimodal_pad_id whatever features come with them; empty otherwise.
  std::vector<int> multimodal_token_ids;
  int multimodal_pad_id = 0;
  // gpt2: false drops the 1/sqrt(head_dim) attention scale; true divides layer i's scale by i + 1.
  bool scale_attn_weights = true, scale_attn_by_inverse_layer_idx = false;
  // olmo / olmoe: q, k and v clamped to [-clip_qkv, clip_qkv] after their projections (and olmoe's q / k norms).
  std::optional<float> clip_qkv;
  // lfm2: the layers that mix positions with a gated short convolution instead of attention (layer_types "conv";
  // empty: none), over conv_kernel positions (conv_L_cache), with conv_bias on its projections and convolution.
  std::vector<bool> conv_layers;
  int conv_kernel = 0;
  bool conv_bias = false;
  // qwen3_next / qwen3_5: the layers that mix positions with a gated delta rule (layer_types "linear_attention";
  // empty: none): linear_num_key_heads key heads of linear_key_head_dim, linear_num_value_heads value heads of
  // linear_value_head_dim, after a causal depthwise convolution of linear_conv_kernel_dim positions.
  std::vector<bool> linear_layers;
  int linear_key_heads = 0, linear_value_heads = 0, linear_key_dim = 0, linear_value_dim = 0, linear_conv_kernel = 0;
  // llama.cpp's qwen35 / qwen35moe files order the value heads tiled (value head j of key head g at j x key heads + g,
  // the converter's reorder) instead of grouped by key head: each value head reads key head (its index mod key heads).
  bool linear_value_heads_tiled = false;
  // qwen3_next / qwen3_5: q_proj also yields a gate per head ([q; gate] per head) and the attention output is
  // multiplied by sigmoid(gate) before o_proj.
  bool attention_output_gate = false;

  // Mixture of experts (mixtral, qwen2_moe, qwen3_moe, gpt_oss): num_local_experts / num_experts, top-k routing.
  std::optional<bool> qkv_bias;  // q/k/v biases: qwen2_moe's switch (default on), a GGUF file's attn_q.bias
  int num_experts = 0;           // 0: dense MLP in every layer
  int num_experts_per_tok = 0;
  int moe_intermediate_size = 0;            // qwen*_moe expert width (mixtral: intermediate_size)
  int shared_expert_intermediate_size = 0;  // qwen2_moe's always-on expert (0: none)
  bool norm_topk_prob = false;              // renormalise the top-k probabilities (mixtral always does)
  // gpt_oss's expert activation: (clamp(up, -limit, limit) + 1) * g * sigmoid(alpha * g), g = min(gate, limit).
  float swiglu_alpha = 1.702f;
  float swiglu_limit = 7.0f;
  // qwen*_moe: layer i is sparse when i is not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0.
  int decoder_sparse_step = 1;
  std::vector<int> mlp_only_layers;
  // glm4_moe (DeepSeek-V3's routing): sigmoid scores; the choice adds each layer's e_score_correction_bias and
  // keeps the topk_group groups (of n_group) whose two best experts score most; the chosen (unbiased) scores,
  // renormalised with norm_topk_prob, times routed_scaling_factor. Its shared experts are ungated.
  bool sigmoid_routing = false;
  int n_group = 1, topk_group = 1;
  float routed_scaling_factor = 1.0f;
  // deepseek_v2's softmax routing with topk_method "group_limited_greedy": only the topk_group groups (of
  // n_group) whose best expert scores most compete; the chosen probabilities times routed_scaling_factor.
  bool group_limited_greedy = false;
  // llama4_text's router (Llama4Router): top-k of the raw logits, each chosen expert fed the token times the
  // sigmoid of its logit and the outputs summed; the ungated shared expert beside them.
  bool llama4_routing = false;
  // phimoe's sparsemixer (transformers' PhimoeTopKRouter, eval mode): the best expert, weighted by its softmax
  // among the experts whose logit is within 2 x router_jitter_noise of it (relative to max(|logit|, best)); then
  // the best of the others, weighted likewise among them. Always two experts.
  bool sparsemixer = false;
  // ernie4_5_moe: the softmax router's choice adds each layer's e_score_correction_bias (moe_statics); the chosen
  // probabilities are divided by max(their sum, moe_norm_min).
  bool softmax_score_bias = false;
  // lfm2_moe: the sigmoid router's choice adds feed_forward.expert_bias (use_expert_bias); without it, the plain
  // scores.
  bool use_expert_bias = false;
  float moe_norm_min = 0.0f;
  // DeepSeek-V2 / V3's multi-head latent attention (kv_lora_rank > 0): queries from q_proj, or q_b_proj over the
  // normed q_a_proj (q_lora_rank > 0); each position's keys and values from one latent of kv_lora_rank features
  // (kv_a_proj_with_mqa, normed) that kv_b_proj expands per head, beside a shared key of qk_rope_head_dim rotary
  // features. mlxgp caches the latent and the rotated shared key, [latent; k_pe], as one KV head, so for these
  // types num_key_value_heads is 1 and head_dim is kv_lora_rank + qk_rope_head_dim (what one cached position of
  // one layer holds); the heads' own widths are qk_nope_head_dim + qk_rope_head_dim and v_head_dim.
  int q_lora_rank = 0, kv_lora_rank = 0, qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
  bool rope_interleave = true;  // deepseek_v3: rotary pairs adjacent (transformers' apply_rotary_pos_emb_interleave)
  // Training: with output_router_logits, loss_forward adds router_aux_loss_coef times transformers'
  // load-balancing loss (mlxgp/loss.h). router_jitter_noise (mixtral) perturbs the router input in
  // training only; the Trainer refuses it (> 0), inference ignores it as transformers' eval mode does.
  // phimoe reads it as sparsemixer's threshold (above), in inference too.
  bool output_router_logits = false;
  double router_aux_loss_coef = 0.001;
  double router_jitter_noise = 0.0;
  // The largest model dropout rate config.json sets (attention, residual, embedding, ...) and its key.
  // transformers applies them in training mode only; mlxgp trains without model dropout, so the Trainer
  // refuses a nonzero one rather than train differently without a word.
  double dropout = 0.0;
  std::string dropout_key;
};

// Layer `layer`'s head width and key/value head count (ModelConfig::layer_head_dims / layer_kv_heads).
int layer_head_dim(const ModelConfig& c, int layer);
int layer_kv_heads(const ModelConfig& c, int layer);
// What the recurrent layers are, for messages: "short convolutions" (conv_layers), "gated delta nets" (linear_layers).
std::string recurrent_layer_kind(const ModelConfig& c);
// Whether layer `layer` attends within sliding_window (ModelConfig::sliding_layers; false past its end).
bool layer_slides(const ModelConfig& c, int layer);
// Parses config.json text; throws [config] on malformed JSON or missing/invalid required fields.
ModelConfig parse_model_config(const std::string& json_text);

// Rejects values no model can run with (non-positive sizes or heads, heads that do not divide, a
// non-positive or non-finite rms_norm_eps / rope_theta / rope scaling factor): throws [component].
// parse_model_config and the GGUF loader call it; sizes are checked against the weights at build time.
void validate_model_config(const ModelConfig& config, const std::string& component = "config");

}  // namespace mlxgp
