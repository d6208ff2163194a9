// Architecture-neutral building blocks shared by every decoder model: linear (dense or MLX affine
// quantized), embedding, RMSNorm, rotary embedding, attention and the SwiGLU MLP. Each reads its
// parameters from a WeightMap by HF name and checks their shapes, naming the tensor on mismatch.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <mlx/mlx.h>

#include "mlxgp/kv_cache.h"
#include "mlxgp/model.h"
#include "mlxgp/model_config.h"

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

// Fetches `name` from `w`, failing with [model] "missing tensor 'name'" or a shape mismatch.
mx::array take(const WeightMap& w, const std::string& name, const mx::Shape& shape);
std::optional<mx::array> take_optional(const WeightMap& w, const std::string& name, const mx::Shape& shape);

// y = x W^T (+ b). Quantized when `prefix.scales` exists (mlx-lm / GGUF layout: rows are outputs,
// groups run along the input dimension); group size and bits follow from the shapes.
struct Linear {
  std::optional<mx::array> weight, scales, biases, bias;
  int group_size = 0, bits = 0;
  // llama.cpp blocks kept as stored (GGUF Q2_K/Q3_K/Q6_K): `weight` is uint8 [out, row bytes] and
  // `prefix.ggml_type` names the format; multiplied by kernels::ggml_matmul.
  std::optional<uint32_t> ggml_type;
  // LoRA adapter (peft layout): y += scale * B(A(dropout(x))), A [r, in], B [out, r]; read from
  // `prefix.lora_A.weight`, `prefix.lora_B.weight` and the scalar `prefix.lora_scale` (alpha / r).
  std::optional<mx::array> lora_a, lora_b, lora_scale;
  static Linear load(const WeightMap& w, const std::string& prefix, int in, int out, bool has_bias);
  bool quantized() const { return scales.has_value(); }
  int in_features = 0;
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

struct RMSNorm {
  std::optional<mx::array> weight;
  float eps = 1e-6f;
  static RMSNorm load(const WeightMap& w, const std::string& name, int dim, float eps);
  mx::array operator()(const mx::array& x) const;
};

// HF non-interleaved ("rotate_half") RoPE; llama3 and linear scaling as in transformers'
// rope init functions. x is [B, heads, T, head_dim].
struct Rope {
  int dims = 0;
  float base = 10000.0f;
  float scale = 1.0f;                // position multiplier (linear scaling: 1/factor)
  std::optional<mx::array> periods;  // llama3: per-pair 1/inv_freq, as mx::fast::rope expects
  // `freq_factors` [head_dim/2]: llama.cpp's rope_freqs divisors (GGUF), multiplied into periods.
  static Rope make(const ModelConfig& c, const std::optional<mx::array>& freq_factors = std::nullopt);
  mx::array operator()(const mx::array& x, int offset) const;
  // Each batch row from its own position (rows of a left-padded batch).
  mx::array operator()(const mx::array& x, const std::vector<int>& row_offsets) const;
};

struct AttentionOptions {
  bool qkv_bias = false;  // qwen2
  bool qk_norm = false;   // qwen3: RMSNorm over head_dim on q and k before RoPE
};

struct Attention {
  Linear q_proj, k_proj, v_proj, o_proj;
  std::optional<RMSNorm> q_norm, k_norm;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
  Rope rope;
  static Attention load(const WeightMap& w, const std::string& prefix, const ModelConfig& c,
                        const AttentionOptions& o);
  // `mask`: the mask for this forward, decided once per forward by the first layer's cache (as
  // mlx-lm's model does); null asks `cache` itself. A QuantizedKVCache is attended to with quantized
  // matmuls (quantized_attention), every other cache with fast sdpa over update()'s keys/values.
  mx::array operator()(const mx::array& x, KVCache& cache, const AttentionMask* mask = nullptr) const;
};

// down(silu(gate(x)) * up(x)).
struct SwiGLU {
  Linear gate_proj, up_proj, down_proj;
  static SwiGLU load(const WeightMap& w, const std::string& prefix, const ModelConfig& c);
  mx::array operator()(const mx::array& x) const;
};

}  // namespace mlxgp::layers
