#include "models/layers.h"

#include <cmath>
#include <numbers>
#include <sstream>
#include <vector>

#include "mlxgp/error.h"
#include "kernels/kernels.h"
#include "mlxgp/quantized_kv_cache.h"

namespace mlxgp::layers {

namespace {

std::string shape_str(const mx::Shape& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

bool is_float(mx::Dtype t) { return mx::issubdtype(t, mx::floating); }

thread_local UsedNames* current_recorder = nullptr;

struct DropoutState {
  float p = 0;
  uint64_t seed = 0, calls = 0;
};
thread_local DropoutState lora_dropout;

// Inverted dropout (torch.nn.Dropout): keep with probability 1 - p and scale by 1 / (1 - p).
mx::array maybe_dropout(const mx::array& x) {
  if (lora_dropout.p <= 0) return x;
  auto key = mx::random::key(lora_dropout.seed * 1000003ULL + lora_dropout.calls++);
  auto keep = mx::random::bernoulli(mx::array(1.0f - lora_dropout.p), x.shape(), key);
  return mx::multiply(x, mx::astype(mx::divide(keep, mx::array(1.0f - lora_dropout.p)), x.dtype()));
}

}  // namespace

UsedNames::UsedNames() : previous_(current_recorder) { current_recorder = this; }
UsedNames::~UsedNames() { current_recorder = previous_; }
void UsedNames::record(const std::string& name) {
  if (current_recorder) current_recorder->names_.push_back(name);
}

std::optional<mx::array> take_optional(const WeightMap& w, const std::string& name, const mx::Shape& shape) {
  auto it = w.find(name);
  if (it == w.end()) return std::nullopt;
  UsedNames::record(name);
  if (it->second.shape() != shape)
    fail("model", "tensor '" + name + "' has shape " + shape_str(it->second.shape()) + ", expected " +
                      shape_str(shape));
  return it->second;
}

mx::array take(const WeightMap& w, const std::string& name, const mx::Shape& shape) {
  auto a = take_optional(w, name, shape);
  if (!a) fail("model", "missing tensor '" + name + "'");
  return *a;
}

Linear Linear::load(const WeightMap& w, const std::string& prefix, int in, int out, bool has_bias) {
  Linear l;
  l.in_features = in;
  const std::string wname = prefix + ".weight";
  auto sit = w.find(prefix + ".scales");
  auto git = w.find(prefix + ".ggml_type");
  if (git != w.end()) {
    UsedNames::record(prefix + ".ggml_type");
    const auto t = git->second.size() == 1 ? mx::astype(git->second, mx::uint32).item<uint32_t>() : 0u;
    if (!kernels::ggml_type_supported(t))
      fail("model", "tensor '" + prefix + ".ggml_type' names no llama.cpp block type mlxgp multiplies");
    auto wit = w.find(wname);
    if (wit == w.end()) fail("model", "missing tensor '" + wname + "'");
    const auto& qw = wit->second;
    if (qw.ndim() != 2 || qw.shape(0) != out || qw.dtype() != mx::uint8 ||
        qw.shape(1) != kernels::ggml_row_bytes(t, in))
      fail("model", "llama.cpp block tensor '" + wname + "' has shape " + shape_str(qw.shape()) +
                        ", which does not fit [" + std::to_string(out) + ", " + std::to_string(in) + "]");
    UsedNames::record(wname);
    l.weight = qw;
    l.ggml_type = t;
  } else if (sit == w.end()) {
    l.weight = take(w, wname, {out, in});
    if (!is_float(l.weight->dtype())) fail("model", "tensor '" + wname + "' is not a float tensor");
  } else {
    // Quantized: weight [out, in*bits/32] uint32, scales/biases [out, in/group_size].
    auto wit = w.find(wname);
    if (wit == w.end()) fail("model", "missing tensor '" + wname + "'");
    const auto& qw = wit->second;
    const auto& sc = sit->second;
    if (qw.ndim() != 2 || sc.ndim() != 2 || qw.shape(0) != out || sc.shape(0) != out || sc.shape(1) == 0 ||
        qw.dtype() != mx::uint32 || in % sc.shape(1) != 0 || (qw.shape(1) * 32) % in != 0)
      fail("model", "quantized tensor '" + wname + "' has shape " + shape_str(qw.shape()) + " with scales " +
                        shape_str(sc.shape()) + ", which does not fit [" + std::to_string(out) + ", " +
                        std::to_string(in) + "]");
    l.group_size = in / sc.shape(1);
    l.bits = qw.shape(1) * 32 / in;
    if ((l.bits != 2 && l.bits != 3 && l.bits != 4 && l.bits != 5 && l.bits != 6 && l.bits != 8) ||
        (l.group_size != 32 && l.group_size != 64 && l.group_size != 128))
      fail("model", "quantized tensor '" + wname + "' has unsupported bits " + std::to_string(l.bits) +
                        " / group size " + std::to_string(l.group_size));
    l.weight = qw;
    l.scales = sc;
    UsedNames::record(wname);
    UsedNames::record(prefix + ".scales");
    l.biases = take(w, prefix + ".biases", sc.shape());
  }
  if (has_bias) l.bias = take(w, prefix + ".bias", {out});
  auto ait = w.find(prefix + ".lora_A.weight");
  if (ait != w.end()) {
    const int r = ait->second.ndim() == 2 ? ait->second.shape(0) : 0;
    if (r < 1) fail("model", "tensor '" + prefix + ".lora_A.weight' must be [rank, " + std::to_string(in) + "]");
    l.lora_a = take(w, prefix + ".lora_A.weight", {r, in});
    l.lora_b = take(w, prefix + ".lora_B.weight", {out, r});
    l.lora_scale = take(w, prefix + ".lora_scale", {});
  }
  return l;
}

LoraDropoutScope::LoraDropoutScope(float p, uint64_t seed) { lora_dropout = {p, seed, 0}; }
LoraDropoutScope::~LoraDropoutScope() { lora_dropout = {}; }

mx::array Linear::operator()(const mx::array& x) const {
  mx::array y = [&] {
    if (ggml_type) return kernels::ggml_matmul(x, *weight, *ggml_type);
    if (!quantized()) return kernels::linear(x, *weight);
    if (kernels::quantized_matmul_supported(x, *weight, *scales, *biases, group_size, bits))
      return kernels::quantized_matmul(x, *weight, *scales, *biases, group_size, bits);
    // MLX's own kernel wants scales in the activation dtype (the loader may keep them 16-bit).
    auto s = scales->dtype() == x.dtype() ? *scales : mx::astype(*scales, x.dtype());
    auto b = biases->dtype() == x.dtype() ? *biases : mx::astype(*biases, x.dtype());
    return mx::quantized_matmul(x, *weight, s, b, true, group_size, bits);
  }();
  if (bias) y = mx::add(y, *bias);
  if (lora_a) {
    auto xa = kernels::linear(maybe_dropout(x), mx::astype(*lora_a, x.dtype()));
    auto delta = kernels::linear(xa, mx::astype(*lora_b, x.dtype()));
    y = mx::add(y, mx::multiply(delta, mx::astype(*lora_scale, y.dtype())));
  }
  return y;
}

Embedding Embedding::load(const WeightMap& w, const std::string& prefix, int vocab, int hidden) {
  return Embedding{Linear::load(w, prefix, hidden, vocab, false)};
}

mx::array Embedding::operator()(const mx::array& tokens) const {
  if (table.ggml_type) {
    // Gather the stored block rows, then dequantize only those (ggml_get_rows does the same).
    auto rows = kernels::ggml_dequantize(mx::take(*table.weight, tokens, 0), *table.ggml_type, table.in_features);
    return dequant_dtype ? mx::astype(rows, *dequant_dtype) : rows;
  }
  if (!table.quantized()) return mx::take(*table.weight, tokens, 0);
  // Gather the packed rows first, then dequantize only those (mlx-lm QuantizedEmbedding).
  auto s = mx::take(*table.scales, tokens, 0), b = mx::take(*table.biases, tokens, 0);
  if (dequant_dtype && s.dtype() != *dequant_dtype) {
    s = mx::astype(s, *dequant_dtype);
    b = mx::astype(b, *dequant_dtype);
  }
  return mx::dequantize(mx::take(*table.weight, tokens, 0), s, b, table.group_size, table.bits);
}

RMSNorm RMSNorm::load(const WeightMap& w, const std::string& name, int dim, float eps) {
  return RMSNorm{take(w, name, {dim}), eps};
}

mx::array RMSNorm::operator()(const mx::array& x) const { return mx::fast::rms_norm(x, *weight, eps); }

Rope Rope::make(const ModelConfig& c, const std::optional<mx::array>& freq_factors) {
  Rope r;
  r.dims = c.head_dim;
  r.base = c.rope_theta;
  if (freq_factors) {
    // llama.cpp: theta_i = pos * inv_freq_i / factor_i, i.e. period_i = factor_i / inv_freq_i.
    if (c.rope_scaling) fail("model", "rope_freqs factors and rope_scaling cannot be combined");
    auto exps = mx::divide(mx::arange(0, r.dims, 2, mx::float32), mx::array(static_cast<float>(r.dims)));
    auto periods = mx::power(mx::array(c.rope_theta), exps);
    r.periods = mx::multiply(periods, mx::astype(*freq_factors, mx::float32));
    return r;
  }
  if (!c.rope_scaling) return r;
  const auto& s = *c.rope_scaling;
  if (s.rope_type == "linear") {
    // transformers divides inv_freq by factor == positions scaled by 1/factor.
    r.scale = 1.0f / s.factor;
  } else if (s.rope_type == "llama3") {
    // transformers _compute_llama3_parameters, expressed as periods (1/inv_freq) for mx::fast::rope.
    const double low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
    const double high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
    std::vector<float> periods;
    for (int i = 0; i < r.dims; i += 2) {
      float inv = 1.0f / std::pow(c.rope_theta, static_cast<float>(i) / r.dims);
      double wavelen = 2 * std::numbers::pi / inv;
      double scaled = wavelen > low_wavelen ? inv / s.factor : inv;
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                        (s.high_freq_factor - s.low_freq_factor);
        scaled = (1 - smooth) * scaled / s.factor + smooth * scaled;
      }
      periods.push_back(static_cast<float>(1.0 / scaled));
    }
    r.periods = mx::array(periods.data(), {static_cast<int>(periods.size())}, mx::float32);
  }
  return r;
}

mx::array Rope::operator()(const mx::array& x, int offset) const {
  if (periods) return mx::fast::rope(x, dims, false, std::nullopt, scale, offset, *periods);
  return kernels::rope(x, dims, base, scale, offset);  // mx::fast::rope off the CPU
}

mx::array Rope::operator()(const mx::array& x, const std::vector<int>& row_offsets) const {
  if (periods) {
    mx::array offs(row_offsets.data(), {static_cast<int>(row_offsets.size())}, mx::int32);
    return mx::fast::rope(x, dims, false, std::nullopt, scale, offs, *periods);
  }
  return kernels::rope(x, dims, base, scale, row_offsets);
}

Attention Attention::load(const WeightMap& w, const std::string& prefix, const ModelConfig& c,
                          const AttentionOptions& o) {
  Attention a;
  a.n_heads = c.num_attention_heads;
  a.n_kv_heads = c.num_key_value_heads;
  a.head_dim = c.head_dim;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const bool bias = o.qkv_bias || c.attention_bias;
  const int q_out = a.n_heads * a.head_dim, kv_out = a.n_kv_heads * a.head_dim;
  a.q_proj = Linear::load(w, prefix + ".q_proj", c.hidden_size, q_out, bias);
  a.k_proj = Linear::load(w, prefix + ".k_proj", c.hidden_size, kv_out, bias);
  a.v_proj = Linear::load(w, prefix + ".v_proj", c.hidden_size, kv_out, bias);
  a.o_proj = Linear::load(w, prefix + ".o_proj", q_out, c.hidden_size, c.attention_bias);
  if (o.qk_norm) {
    a.q_norm = RMSNorm::load(w, prefix + ".q_norm.weight", a.head_dim, c.rms_norm_eps);
    a.k_norm = RMSNorm::load(w, prefix + ".k_norm.weight", a.head_dim, c.rms_norm_eps);
  }
  a.rope = Rope::make(c, take_optional(w, "model.rope_freq_factors", {c.head_dim / 2}));
  return a;
}

mx::array Attention::operator()(const mx::array& x, KVCache& cache, const AttentionMask* mask) const {
  const int B = x.shape(0), T = x.shape(1);
  auto heads = [&](const mx::array& y, int n, const std::optional<RMSNorm>& norm) {
    auto h = mx::reshape(y, {B, T, n, head_dim});
    if (norm) h = (*norm)(h);
    return mx::transpose(h, {0, 2, 1, 3});
  };
  AttentionMask own;
  if (!mask) {
    own = cache.make_mask(T);  // before update(), as mlx-lm asks make_mask before update_and_fetch
    mask = &own;
  }
  // A left-padded batch rotates each row from its own position, as transformers' position_ids do.
  auto rotate = [&](const mx::array& h) {
    return cache.left_padding().empty() ? rope(h, cache.offset()) : rope(h, cache.row_offsets());
  };
  auto q = rotate(heads(q_proj(x), n_heads, q_norm));
  auto k = rotate(heads(k_proj(x), n_kv_heads, k_norm));
  auto v = heads(v_proj(x), n_kv_heads, std::nullopt);
  std::optional<mx::array> o;
  if (auto* qc = dynamic_cast<QuantizedKVCache*>(&cache)) {
    auto [qk, qv] = qc->update_quantized(k, v);
    o = quantized_attention(q, qk, qv, scale, *mask, qc->group_size(), qc->bits());
  } else {
    auto [keys, values] = cache.update(k, v);
    // sdpa handles GQA itself; its "causal" mask is aligned to the last key, so it also covers a
    // chunked prefill on top of a non-empty cache. A single query needs no mask.
    switch (mask->kind) {
      case AttentionMask::Kind::None:
        o = kernels::attention(q, keys, values, scale, false, mask->key_start);
        break;
      case AttentionMask::Kind::Causal:
        o = kernels::attention(q, keys, values, scale, true, mask->key_start);
        break;
      case AttentionMask::Kind::Array:
        o = mx::fast::scaled_dot_product_attention(q, keys, values, scale, "array", *mask->array);
        break;
    }
  }
  auto out = mx::reshape(mx::transpose(*o, {0, 2, 1, 3}), {B, T, n_heads * head_dim});
  return o_proj(out);
}

SwiGLU SwiGLU::load(const WeightMap& w, const std::string& prefix, const ModelConfig& c) {
  SwiGLU m;
  m.gate_proj = Linear::load(w, prefix + ".gate_proj", c.hidden_size, c.intermediate_size, c.mlp_bias);
  m.up_proj = Linear::load(w, prefix + ".up_proj", c.hidden_size, c.intermediate_size, c.mlp_bias);
  m.down_proj = Linear::load(w, prefix + ".down_proj", c.intermediate_size, c.hidden_size, c.mlp_bias);
  return m;
}

mx::array SwiGLU::operator()(const mx::array& x) const {
  return down_proj(kernels::swiglu(gate_proj(x), up_proj(x)));
}

}  // namespace mlxgp::layers
