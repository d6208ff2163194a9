// Architecture-neutral building blocks shared by every decoder model: linear (dense or MLX affine
// quantized), embedding, RMSNorm, rotary embedding, attention and the SwiGLU MLP. Each reads its
// parameters from a WeightMap by HF name and checks their shapes, naming the tensor on mismatch.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <mlx/mlx.h>

#include "kernels/kernels.h"
#include "mlxgp/kv_cache.h"
#include "mlxgp/model.h"
#include "mlxgp/model_config.h"

namespace mx = mlx::core;

namespace mlxgp::layers {

// While alive, records the names every take()/take_optional() on this thread found, so a model
// can keep only the tensors it uses.
class UsedNames {
 public:
  UsedNames();
  ~UsedNames();
  const std::vector<std::string>& names() const { return names_; }
  static void record(const std::string& name);

 private:
  std::vector<std::string> names_;
  UsedNames* previous_;
};

// The int8 repacks (kernels::ggml_q8_pack) of a model's llama.cpp weights, kept across rebuilds
// (set_parameters rebuilds every layer): while a scope is open, Linear::load reuses the repack of a stored
// array packed before and records the ones it makes. The cache keeps each stored array with its repack,
// so an array's id names one content for as long as the entry lives. When the scope closes without an
// exception, the cache holds only what that build used.
class RepackScope {
 public:
  using Cache = std::vector<std::pair<mx::array, mx::array>>;  // stored, repacked
  explicit RepackScope(Cache& cache);
  ~RepackScope();
  // w's repack for int8 activations, or nullopt where it does not apply.
  static std::optional<mx::array> repack(const mx::array& w, uint32_t type, int in);

 private:
  Cache& cache_;
  Cache used_;
  RepackScope* previous_;
};

// Fetches `name` from `w`, failing with [model] "missing tensor 'name'" or a shape mismatch.
mx::array take(const WeightMap& w, const std::string& name, const mx::Shape& shape);
std::optional<mx::array> take_optional(const WeightMap& w, const std::string& name, const mx::Shape& shape);
// llama.cpp blocks kept as stored (GGUF): `prefix.weight` uint8 [rows..., row bytes of `in` values] and
// the format in `prefix.ggml_type`; nullopt when `prefix` has no ggml_type. Checked, and recorded as used.
// `prefix.int8_activations` (set by the loader for LoadOptions::int8_activations) selects llama.cpp's
// arithmetic for its products.
struct GgmlWeight {
  mx::array weight;
  uint32_t type = 0;
  bool int8_activations = false;
};
std::optional<GgmlWeight> take_ggml_blocks(const WeightMap& w, const std::string& prefix, const mx::Shape& rows,
                                           int in);

// "[a, b, c]", for error messages naming a tensor's shape.
std::string shape_str(const mx::Shape& s);

// MLX affine quantization mlxgp multiplies: 2/3/4/5/6/8 bits, groups of 32/64/128; else [model] naming `wname`.
void check_quantization(const std::string& wname, int bits, int group_size);

// The MLX microscaling mode of the quantized tensor `prefix.weight` whose scales are uint8 (and which has no
// biases), from its bits and group size as mlx-lm's infer_quant_config reads them: "mxfp4" (4 / 32),
// "mxfp8" (8 / 32) or "nvfp4" (4 / 16); else [model] naming the tensor, as for an nvfp4 global scale
// (`prefix.global_scale`), which MLX's CPU kernels lack.
std::string microscaling_mode(const WeightMap& w, const std::string& prefix, int bits, int group_size);
// (bits, group size) of a microscaling tensor from its packed uint32 words and its scale groups per row: each
// mode has one pair, told apart by the words per group (mxfp4 4, mxfp8 8, nvfp4 2); (0, 0) when none fits.
std::pair<int, int> microscaling_bits_group(int words, int groups);

// y = x W^T (+ b). Quantized when `prefix.scales` exists (mlx-lm / GGUF layout: rows are outputs,
// groups run along the input dimension); group size and bits follow from the shapes, the mode from the
// scales' dtype (float: affine with biases; uint8: a microscaling mode, microscaling_mode).
struct Linear {
  std::optional<mx::array> weight, scales, biases, bias;
  int group_size = 0, bits = 0;
  std::string mode = "affine";  // MLX's quantization mode of weight / scales (/ biases)
  // llama.cpp blocks kept as stored (GGUF Q2_K/Q3_K/Q6_K/IQ4_NL/IQ4_XS, others on AVX-512): `weight` is uint8 [out, row
  // bytes] and `prefix.ggml_type` names the format; multiplied by kernels::ggml_matmul.
  std::optional<uint32_t> ggml_type;
  bool int8_activations = false;       // llama.cpp's arithmetic for the blocks' products (kernels/ggml_q8.h)
  std::optional<mx::array> q8_packed;  // with int8_activations: weight repacked, which the products read
  // LoRA adapter (peft layout): y += scale * B(A(dropout(x))), A [r, in], B [out, r]; read from
  // `prefix.lora_A.weight`, `prefix.lora_B.weight` and the scalar `prefix.lora_scale` (alpha / r).
  std::optional<mx::array> lora_a, lora_b, lora_scale;
  static Linear load(const WeightMap& w, const std::string& prefix, int in, int out, bool has_bias);
  bool quantized() const { return scales.has_value(); }
  int in_features = 0;
  // Tensor parallelism: this rank holds some input columns; the partial products are summed over the
  // group (all_sum) and the bias is added once, after the sum.
  std::optional<mx::distributed::Group> reduce;
  mx::array operator()(const mx::array& x) const;
};

// LoRA dropout while training: set for the duration of a training forward (thread-local; off by default).
struct LoraDropoutScope {
  LoraDropoutScope(float p, uint64_t seed);
  ~LoraDropoutScope();
  LoraDropoutScope(const LoraDropoutScope&) = delete;
  LoraDropoutScope& operator=(const LoraDropoutScope&) = delete;
};

// Token embedding table [vocab, hidden], optionally quantized; doubles as the tied output head.
struct Embedding {
  Linear table;  // same storage as a Linear with in = hidden, out = vocab
  // Quantized tables: widen gathered scales/biases to this dtype before dequantizing, so looked-up
  // rows come out in the model's activation dtype (scales may be stored 16-bit).
  std::optional<mx::Dtype> dequant_dtype;
  static Embedding load(const WeightMap& w, const std::string& prefix, int vocab, int hidden);
  mx::array operator()(const mx::array& tokens) const;
  mx::array as_linear(const mx::array& x) const { return table(x); }
};

// x / rms(x) * w (without a weight: x / rms(x), llama4_text's q / k norms), or * (1 + w) for gemma's norms (`plus_one`;
// the stored parameter stays w); or, with `layer_norm` set, LayerNorm (x - mean) / std * w (+ b: starcoder2; cohere's
// have no bias; olmo's neither a weight nor a bias).
struct RMSNorm {
  std::optional<mx::array> weight;
  float eps = 1e-6f;
  std::optional<mx::array> effective;  // 1 + w when plus_one
  std::optional<mx::array> bias;       // LayerNorm's, when it has one
  bool layer_norm = false;
  static RMSNorm load(const WeightMap& w, const std::string& name, int dim, float eps, bool plus_one = false);
  // `name` is the weight's; the bias (`with_bias`) is its sibling `.bias`.
  // `plus_one`: nemotron's LayerNorm1P, which scales by (1 + w).
  static RMSNorm load_layer_norm(const WeightMap& w, const std::string& name, int dim, float eps, bool with_bias = true,
                                 bool plus_one = false);
  // cohere's q / k norms (use_qk_norm): a bias-free LayerNorm over head_dim with its own weights per head, stored
  // [heads, head_dim] and kept [heads, 1, head_dim] to scale [B, heads, T, head_dim].
  static RMSNorm load_head_layer_norm(const WeightMap& w, const std::string& name, int heads, int head_dim, float eps);
  mx::array operator()(const mx::array& x) const;
  // The weight kernels::rms_norm multiplies by where operator() is that kernel (no LayerNorm bias), for
  // running the norm fused into the products that read it; nullopt otherwise.
  std::optional<mx::array> kernel_weight() const;
};

// A pre-norm block's surroundings of its attention or MLP: the norm the input goes through first and the
// residual the output is added to (residual + f(norm(x))). They run inside the products' graph node where
// the weights allow (kernels::ggml_matmul_fused, the same bits), one op at a time otherwise.
struct PreNormResidual {
  const RMSNorm* norm = nullptr;
  const mx::array* residual = nullptr;
};

// HF non-interleaved ("rotate_half") RoPE; llama3, linear and longrope scaling as in transformers'
// rope init functions. x is [B, heads, T, head_dim]; the first `dims` features rotate (partial rotary).
// `traditional`: adjacent features (2i, 2i + 1) rotate together instead (glm's and cohere's interleaved
// apply_rotary_pos_emb, mx::fast::rope's traditional layout).
struct Rope {
  int dims = 0;
  bool traditional = false;
  float base = 10000.0f;
  float scale = 1.0f;                // position multiplier (linear scaling: 1/factor)
  std::optional<mx::array> periods;  // llama3/longrope: per-pair 1/inv_freq, as mx::fast::rope expects
  // longrope: `long_periods` once a forward reaches past original_max positions (transformers'
  // longrope_frequency_update decides per forward from its largest position), and cos/sin scaled by
  // attention_factor (long_attention_factor with the long periods: phimoe's long_mscale).
  std::optional<mx::array> long_periods;
  int original_max = 0;
  float attention_factor = 1.0f, long_attention_factor = 1.0f;
  // `freq_factors` [head_dim/2]: llama.cpp's rope_freqs divisors (GGUF), multiplied into periods.
  // `sliding`: the rope of sliding-window layers (gemma3's local base), when the config has one.
  // `head_dim`: the layer's, where it differs from c.head_dim (0: c.head_dim; gemma4_text's full layers).
  static Rope make(const ModelConfig& c, const std::optional<mx::array>& freq_factors = std::nullopt,
                   bool sliding = false, int head_dim = 0);
  mx::array operator()(const mx::array& x, int offset) const;
  const mx::array* periods_for(int last_position) const;  // null: plain base-theta frequencies
  float factor_for(int last_position) const;              // the cos/sin multiplier with those periods
  // This rope of a [B, T, heads x head_dim] projection before `cache` takes it, as the llama.cpp block
  // product applies it in its node (kernels::GgmlFusion); nullopt where operator() is mx::fast::rope.
  std::optional<kernels::GgmlRope> kernel_params(const KVCache& cache, int T, int head_dim) const;
  // Each batch row from its own position (rows of a left-padded batch).
  mx::array operator()(const mx::array& x, const std::vector<int>& row_offsets) const;
};

struct AttentionOptions {
  bool qkv_bias = false;       // qwen2
  bool qk_norm = false;        // qwen3: RMSNorm over head_dim on q and k before RoPE
  bool qk_norm_full = false;   // olmo2: RMSNorm over the whole q / k projection, before the head split
  bool norm_plus_one = false;  // gemma3: the q/k norms scale by (1 + w)
  bool fused_qkv = false;      // phi3: one qkv_proj, split into q, k, v
  // gpt_neox: one query_key_value whose rows hold each head's [q; k; v] in turn ([heads, 3, head_dim]).
  bool fused_qkv_per_head = false;
  bool sinks = false;             // gpt_oss: a learned logit per head joins each softmax and is dropped after
  bool rope_traditional = false;  // glm, cohere: interleaved rotary pairs (Rope::traditional)
  const char* o_proj = "o_proj";  // the output projection's name (phi: dense)
  bool qk_layer_norm = false;     // cohere (use_qk_norm): per-head LayerNorms on q and k, weights [heads, head_dim]
  // hunyuan_v1_dense: qk_norm's per-head RMSNorms applied after RoPE, named query_layernorm / key_layernorm.
  bool qk_norm_after_rope = false;
  // llama4_text (use_qk_norm): weightless RMSNorms (Llama4TextL2Norm) on q and k after RoPE, on rotary layers alone.
  bool l2_qk_norm = false;
  // gemma4_text: a weightless RMSNorm over each value head, and scores q.k unscaled (its q / k norms set the scale).
  bool v_norm = false;
  bool unscaled = false;
  // qk_norm's tensors (lfm2: q_layernorm / k_layernorm).
  const char* q_norm = "q_norm";
  const char* k_norm = "k_norm";
};

// DeepSeek-V2 / V3's multi-head latent attention (ModelConfig::kv_lora_rank), in the absorbed form mlx-lm decodes
// with: kv_b_proj's key rows fold into each head's query (q_nope W_uk -> latent space), so all heads attend to
// one cached head [latent; k_pe] (kv_lora_rank + qk_rope_head_dim features) that serves as keys and values alike;
// the first kv_lora_rank features of each head's output then go through kv_b_proj's value rows. The same scores
// and outputs as transformers' expanded keys and values, with a cache of one latent a position (models/mla.cpp).
struct LatentAttention {
  std::optional<Linear> q_a_proj;  // with q_lora_rank; q_proj is then q_b_proj
  std::optional<RMSNorm> q_a_norm;
  Linear q_proj, kv_a_proj;  // kv_a_proj_with_mqa: [latent; k_pe]
  RMSNorm kv_a_norm;
  // kv_b_proj [heads x (nope + v), rank] as the products read it (dequantized): keys [heads, nope, rank], values
  // [heads, rank, v].
  std::optional<mx::array> wk, wv;
  int heads = 0, nope = 0, rope_dims = 0, v_dim = 0, rank = 0;
  static LatentAttention load(const WeightMap& w, const std::string& prefix, const ModelConfig& c);
  // x [B, T, hidden] -> (queries [B, heads, T, rank + rope], the position's cache entry [B, 1, T, rank + rope]);
  // `rotate` applies the layer's RoPE to q_pe / k_pe ([B, heads | 1, T, rope]).
  std::pair<mx::array, mx::array> project(const mx::array& x,
                                          const std::function<mx::array(const mx::array&)>& rotate) const;
  // Attention output over the cached heads [B, heads, T, rank + rope] -> [B, T, heads x v] for o_proj.
  mx::array output(const mx::array& o) const;
};

// gemma4_text's keys and values handed from the layer that computes them to the later layers that share them
// (ModelConfig::num_kv_shared_layers): normed and rotated, before a cache takes them.
struct SharedKV {
  std::optional<mx::array> keys, values;
};

struct Attention {
  Linear q_proj, k_proj, v_proj, o_proj;
  std::optional<LatentAttention> mla;  // deepseek_v2 / v3: q/k/v_proj unused
  std::optional<Linear> qkv_proj;      // fused (phi3); q/k/v_proj unused then
  bool qkv_per_head = false;           // qkv_proj's rows per head (gpt_neox's query_key_value)
  std::optional<RMSNorm> q_norm, k_norm;
  std::optional<RMSNorm> v_norm;  // gemma4_text: weightless, per value head
  bool values_from_keys = false;  // gemma4_text's attention_k_eq_v layers: no v_proj, v = k's projection
  // gemma4_text's KV-shared layers: queries alone; the keys and values come from an earlier layer (SharedKV).
  bool kv_shared = false;
  bool full_qk_norm = false;
  bool norm_after_rope = false;  // hunyuan_v1_dense: q / k normed after they rotate
  // qwen3_next / qwen3_5 (ModelConfig::attention_output_gate): q_proj yields [q; gate] per head, and the heads'
  // output is multiplied by sigmoid(gate) before o_proj.
  bool output_gate = false;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
  std::optional<float> softcap;    // gemma2: scores = softcap * tanh(scores / softcap)
  std::optional<float> clip_qkv;   // olmo / olmoe: q, k, v clamped to [-clip, clip] before the head split
  std::optional<mx::array> sinks;  // gpt_oss: [n_heads], self_attn.sinks
  std::optional<Rope> rope;        // absent: a layer without positions (smollm3's no-rope layers)
  // ministral3, llama4_text: queries scaled by position after RoPE (ModelConfig::llama4_scaling_beta); llama4_text
  // counts positions from 1 (shift 1).
  std::optional<float> llama4_beta;
  int llama4_positions = 0, llama4_shift = 0;
  // Tensor parallelism with olmo2's whole-projection q/k norms: the mean square spans every rank's
  // share, so it is summed over this group; q/k_norm_dim are the whole projections' widths.
  std::optional<mx::distributed::Group> norm_group;
  int q_norm_dim = 0, k_norm_dim = 0;
  // `layer`: picks the layer's rope (sliding or not, rotary or not) from the config.
  static Attention load(const WeightMap& w, const std::string& prefix, const ModelConfig& c, const AttentionOptions& o,
                        int layer = 0);
  // `mask`: the mask for this forward, decided once per forward by the first layer's cache (as
  // mlx-lm's model does); null asks `cache` itself. A QuantizedKVCache is attended to with quantized
  // matmuls (quantized_attention), every other cache with fast sdpa over update()'s keys/values.
  // `share` (gemma4_text): a kv_shared layer reads its keys and values there; another layer given one leaves its own
  // there for the layers after it.
  mx::array operator()(const mx::array& x, KVCache& cache, const AttentionMask* mask = nullptr,
                       const PreNormResidual& around = {}, SharedKV* share = nullptr) const;

 private:
  static Attention load_latent(const WeightMap& w, const std::string& prefix, const ModelConfig& c, Attention a);
  // q [B, heads, T, D] against the cache after it takes k / v ([B, kv heads, T, D]): [B, heads, T, D of v].
  mx::array attend(const mx::array& q, const mx::array& k, const mx::array& v, KVCache& cache,
                   const AttentionMask& mask) const;
};

// The ungated MLP's two projections (SwiGLU::Kind::Plain): starcoder2's c_fc / c_proj, phi's fc1 / fc2.
struct PlainMlpNames {
  const char* in = "c_fc";
  const char* out = "c_proj";
};

// The gated MLP's three projections (SwiGLU::Kind::Gated): lfm2 names them w1 / w3 / w2.
struct GatedMlpNames {
  const char* gate = "gate_proj";
  const char* up = "up_proj";
  const char* down = "down_proj";
};

// Apertus's xIELU activation (transformers' XIELUActivation, arXiv 2411.13010) with its layer's learned scalars:
// x > 0: softplus(alpha_p) x^2 + beta x; else (expm1(min(x, eps)) - x) (beta + softplus(alpha_n)) + beta x.
// alpha_p / alpha_n are parameters (trained), beta / eps buffers (not), all read from `prefix` (mlp.act_fn).
struct Xielu {
  std::optional<mx::array> alpha_p, alpha_n, beta, eps;
  static Xielu load(const WeightMap& w, const std::string& prefix);
  mx::array operator()(const mx::array& x) const;
};

// down(act(gate(x)) * up(x)): SwiGLU (silu) or GeGLU (gelu, gelu_pytorch_tanh: gemma); phi3 fuses
// gate and up into one gate_up_proj ([gate; up] rows); Plain is the ungated c_proj(act(c_fc(x)))
// (starcoder2; up_proj holds c_fc, down_proj c_proj; phi names them fc1 / fc2: PlainMlpNames).
struct SwiGLU {
  Linear gate_proj, up_proj, down_proj;
  std::optional<Linear> gate_up_proj;
  // Relu2: relu(x)^2 (arcee, nemotron); Xielu: apertus's, with `xielu`'s learned scalars (plain MLPs only).
  enum class Act { Silu, Gelu, GeluTanh, Relu2, Xielu } act = Act::Silu;
  std::optional<Xielu> xielu;
  enum class Kind { Gated, GatedFused, Plain } kind = Kind::Gated;
  int intermediate = 0;
  static SwiGLU load(const WeightMap& w, const std::string& prefix, const ModelConfig& c, Kind kind = Kind::Gated,
                     const PlainMlpNames& names = {}, const GatedMlpNames& gated = {});
  mx::array operator()(const mx::array& x, const PreNormResidual& around = {}) const;
};

// The activations DecoderModel accepts (config hidden_act / hidden_activation), named on refusal.
SwiGLU::Act parse_activation(const std::string& name);
// act(x), and act(gate) * up, the gated MLP's middle (SwiGLU::operator(), the MoE experts).
mx::array activation(SwiGLU::Act act, const mx::array& x);
mx::array gated_activation(SwiGLU::Act act, const mx::array& gate, const mx::array& up);

}  // namespace mlxgp::layers
