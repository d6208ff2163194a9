#include "models/layers.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <initializer_list>
#include <limits>
#include <numbers>
#include <sstream>
#include <vector>

#include "mlxgp/error.h"
#include "kernels/kernels.h"
#include "mlxgp/quantized_kv_cache.h"

namespace mx = mlx::core;

namespace mlxgp::layers {

std::string shape_str(const mx::Shape& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

namespace {

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

thread_local RepackScope* current_repacks = nullptr;

RepackScope::RepackScope(Cache& cache) : cache_(cache), previous_(current_repacks) { current_repacks = this; }
RepackScope::~RepackScope() {
  current_repacks = previous_;
  if (std::uncaught_exceptions() == 0) cache_ = std::move(used_);
}

std::optional<mx::array> RepackScope::repack(const mx::array& w, uint32_t type, int in) {
  RepackScope* scope = current_repacks;
  if (scope) {
    for (auto* c : {&scope->used_, &scope->cache_})
      for (auto& [stored, packed] : *c)
        if (stored.id() == w.id()) {
          if (c == &scope->cache_) scope->used_.emplace_back(stored, packed);
          return packed;
        }
  }
  auto packed = kernels::ggml_q8_pack(w, type, in);
  if (scope && packed) scope->used_.emplace_back(w, *packed);
  return packed;
}

std::optional<mx::array> take_optional(const WeightMap& w, const std::string& name, const mx::Shape& shape) {
  auto it = w.find(name);
  if (it == w.end()) return std::nullopt;
  UsedNames::record(name);
  if (it->second.shape() != shape)
    fail("model",
         "tensor '" + name + "' has shape " + shape_str(it->second.shape()) + ", expected " + shape_str(shape));
  return it->second;
}

mx::array take(const WeightMap& w, const std::string& name, const mx::Shape& shape) {
  auto a = take_optional(w, name, shape);
  if (!a) fail("model", "missing tensor '" + name + "'");
  return *a;
}

void check_quantization(const std::string& wname, int bits, int group_size) {
  if ((bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8) ||
      (group_size != 32 && group_size != 64 && group_size != 128))
    fail("model", "quantized tensor '" + wname + "' has unsupported bits " + std::to_string(bits) + " / group size " +
                      std::to_string(group_size));
}

std::string microscaling_mode(const WeightMap& w, const std::string& prefix, int bits, int group_size) {
  const std::string wname = prefix + ".weight";
  if (w.count(prefix + ".global_scale"))
    fail("model", "tensor '" + prefix +
                      ".global_scale': nvfp4 global scales are not supported (MLX's CPU kernels "
                      "have none)");
  if (bits == 4 && group_size == 32) return "mxfp4";
  if (bits == 8 && group_size == 32) return "mxfp8";
  if (bits == 4 && group_size == 16) return "nvfp4";
  fail("model", "quantized tensor '" + wname + "' has uint8 scales but bits " + std::to_string(bits) +
                    " / group size " + std::to_string(group_size) +
                    ", which fit no MLX mode (mxfp4 4 / 32, mxfp8 8 / 32, nvfp4 4 / 16)");
}

std::pair<int, int> microscaling_bits_group(int words, int groups) {
  for (auto [b, g] : {std::pair{4, 32}, std::pair{8, 32}, std::pair{4, 16}})
    if (groups > 0 && words == groups * g * b / 32) return {b, g};
  return {0, 0};
}

std::optional<GgmlWeight> take_ggml_blocks(const WeightMap& w, const std::string& prefix, const mx::Shape& rows,
                                           int in) {
  auto git = w.find(prefix + ".ggml_type");
  if (git == w.end()) return std::nullopt;
  UsedNames::record(prefix + ".ggml_type");
  const auto t = git->second.size() == 1 ? mx::astype(git->second, mx::uint32).item<uint32_t>() : 0u;
  if (!kernels::ggml_type_supported(t))
    fail("model", "tensor '" + prefix + ".ggml_type' names no llama.cpp block type mlxgp multiplies");
  const std::string wname = prefix + ".weight";
  auto wit = w.find(wname);
  if (wit == w.end()) fail("model", "missing tensor '" + wname + "'");
  const auto& qw = wit->second;
  mx::Shape want = rows, full = rows;
  want.push_back(kernels::ggml_row_bytes(t, in));
  full.push_back(in);
  if (qw.shape() != want || qw.dtype() != mx::uint8 || want.back() == 0)
    fail("model", "llama.cpp block tensor '" + wname + "' has shape " + shape_str(qw.shape()) +
                      ", which does not fit " + shape_str(full));
  UsedNames::record(wname);
  GgmlWeight g{qw, t, false};
  if (auto it = w.find(prefix + ".int8_activations"); it != w.end()) {
    UsedNames::record(prefix + ".int8_activations");
    g.int8_activations = it->second.size() == 1 && mx::astype(it->second, mx::bool_).item<bool>();
  }
  return g;
}

Linear Linear::load(const WeightMap& w, const std::string& prefix, int in, int out, bool has_bias) {
  Linear l;
  l.in_features = in;
  const std::string wname = prefix + ".weight";
  auto sit = w.find(prefix + ".scales");
  if (auto blocks = take_ggml_blocks(w, prefix, {out}, in)) {
    l.weight = blocks->weight;
    l.ggml_type = blocks->type;
    l.int8_activations = blocks->int8_activations;
    if (l.int8_activations) l.q8_packed = RepackScope::repack(*l.weight, *l.ggml_type, in);
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
    l.weight = qw;
    l.scales = sc;
    UsedNames::record(wname);
    UsedNames::record(prefix + ".scales");
    if (sc.dtype() == mx::uint8) {
      l.mode = microscaling_mode(w, prefix, l.bits, l.group_size);
    } else {
      check_quantization(wname, l.bits, l.group_size);
      l.biases = take(w, prefix + ".biases", sc.shape());
    }
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
    if (ggml_type) return kernels::ggml_matmul(x, *weight, *ggml_type, int8_activations, q8_packed);
    if (!quantized()) return kernels::linear(x, *weight);
    // Microscaling modes (uint8 scales, no biases): the CPU kernels for mxfp4 / nvfp4, else MLX's own.
    if (mode != "affine") return kernels::quantized_matmul(x, *weight, *scales, std::nullopt, group_size, bits, mode);
    if (kernels::quantized_matmul_supported(x, *weight, *scales, *biases, group_size, bits))
      return kernels::quantized_matmul(x, *weight, *scales, *biases, group_size, bits);
    // MLX's own kernel wants scales in the activation dtype (the loader may keep them 16-bit).
    auto s = scales->dtype() == x.dtype() ? *scales : mx::astype(*scales, x.dtype());
    auto b = biases->dtype() == x.dtype() ? *biases : mx::astype(*biases, x.dtype());
    return mx::quantized_matmul(x, *weight, s, b, true, group_size, bits);
  }();
  if (bias && !reduce) y = mx::add(y, *bias);
  if (lora_a) {
    auto xa = kernels::linear(maybe_dropout(x), mx::astype(*lora_a, x.dtype()));
    auto delta = kernels::linear(xa, mx::astype(*lora_b, x.dtype()));
    y = mx::add(y, mx::multiply(delta, mx::astype(*lora_scale, y.dtype())));
  }
  if (reduce) {
    y = mx::distributed::all_sum(y, *reduce);
    if (bias) y = mx::add(y, *bias);
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
  if (table.mode != "affine")  // microscaling values are exact in every float dtype: rows in the activation dtype
    return mx::dequantize(mx::take(*table.weight, tokens, 0), mx::take(*table.scales, tokens, 0), std::nullopt,
                          table.group_size, table.bits, table.mode, std::nullopt, dequant_dtype.value_or(mx::float32));
  auto s = mx::take(*table.scales, tokens, 0), b = mx::take(*table.biases, tokens, 0);
  if (dequant_dtype && s.dtype() != *dequant_dtype) {
    s = mx::astype(s, *dequant_dtype);
    b = mx::astype(b, *dequant_dtype);
  }
  return mx::dequantize(mx::take(*table.weight, tokens, 0), s, b, table.group_size, table.bits);
}

RMSNorm RMSNorm::load(const WeightMap& w, const std::string& name, int dim, float eps, bool plus_one) {
  RMSNorm n{take(w, name, {dim}), eps, std::nullopt, std::nullopt};
  // transformers' GemmaRMSNorm: x.float() normalised, times (1 + w.float()), cast back once.
  if (plus_one) {
    n.effective = mx::add(mx::astype(*n.weight, mx::float32), mx::array(1.0f));
    // Evaluated here, on the loading thread: a lazy array would be evaluated on the thread that first runs the
    // model, which (a server's worker) has no stream of the loading thread's.
    mx::eval(*n.effective);
  }
  return n;
}

RMSNorm RMSNorm::load_layer_norm(const WeightMap& w, const std::string& name, int dim, float eps, bool with_bias,
                                 bool plus_one) {
  const auto base = name.size() > 7 && name.ends_with(".weight") ? name.substr(0, name.size() - 7) : name;
  std::optional<mx::array> bias;
  if (with_bias) bias = take(w, base + ".bias", {dim});
  RMSNorm n{take(w, name, {dim}), eps, std::nullopt, bias, true};
  // transformers' NemotronLayerNorm1P: F.layer_norm(x, w + 1, b), the sum in the weight's dtype.
  if (plus_one) {
    n.effective = mx::add(*n.weight, mx::array(1.0f, n.weight->dtype()));
    mx::eval(*n.effective);  // (on the loading thread: RMSNorm::load)
  }
  return n;
}

RMSNorm RMSNorm::load_head_layer_norm(const WeightMap& w, const std::string& name, int heads, int head_dim, float eps) {
  return RMSNorm{mx::reshape(take(w, name, {heads, head_dim}), {heads, 1, head_dim}), eps, std::nullopt, std::nullopt,
                 true};
}

mx::array RMSNorm::operator()(const mx::array& x) const {
  if (!weight && !layer_norm) return mx::fast::rms_norm(x, std::nullopt, eps);
  if (!weight) return mx::fast::layer_norm(x, std::nullopt, std::nullopt, eps);  // OlmoLayerNorm
  if (layer_norm && weight->ndim() > 1)  // per-head weights (cohere's q / k norms): scale after normalising
    return mx::multiply(mx::fast::layer_norm(x, std::nullopt, std::nullopt, eps), mx::astype(*weight, x.dtype()));
  if (layer_norm) return mx::fast::layer_norm(x, effective ? *effective : *weight, bias, eps);
  if (!effective) return kernels::rms_norm(x, *weight, eps);
  if (x.dtype() == mx::float32) return kernels::rms_norm(x, *effective, eps);
  return mx::astype(mx::fast::rms_norm(mx::astype(x, mx::float32), *effective, eps), x.dtype());
}

std::optional<mx::array> RMSNorm::kernel_weight() const {
  if (layer_norm) return std::nullopt;
  return effective ? effective : weight;
}

namespace {

mx::array pre_norm(const mx::array& x, const PreNormResidual& around) { return around.norm ? (*around.norm)(x) : x; }

}  // namespace

namespace {

// transformers' _compute_yarn_parameters in float32 as torch computes it: each frequency blends the
// interpolated (1 / (factor * base^(2i/dim))) and the original one by a ramp over the dims between
// beta_fast and beta_slow rotations in the original context; returned as periods (1 / inv_freq).
mx::array yarn_periods(const RopeScaling& s, float base, int dim) {
  const double lbase = std::log(static_cast<double>(base));
  auto correction_dim = [&](double rotations) {
    return dim * std::log(s.original_max_position_embeddings / (rotations * 2 * std::numbers::pi)) / (2 * lbase);
  };
  double low = correction_dim(s.beta_fast), high = correction_dim(s.beta_slow);
  if (s.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // transformers: "prevent singularity"
  const float lo = static_cast<float>(low), span = static_cast<float>(high - low);
  std::vector<float> periods;
  for (int i = 0; i < dim / 2; ++i) {
    const float pos_freq = std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dim));
    const float extrapolation = 1.0f / pos_freq, interpolation = 1.0f / (s.factor * pos_freq);
    const float extra = 1.0f - std::clamp((static_cast<float>(i) - lo) / span, 0.0f, 1.0f);
    periods.push_back(1.0f / (interpolation * (1.0f - extra) + extrapolation * extra));
  }
  return mx::array(periods.data(), {static_cast<int>(periods.size())}, mx::float32);
}

// The cos/sin multiplier: given, or 0.1 * ln(factor) + 1 (each term with its mscale when both are set).
float yarn_attention_factor(const RopeScaling& s) {
  if (s.attention_factor) return *s.attention_factor;
  auto get_mscale = [&](double m) { return s.factor <= 1.0f ? 1.0 : 0.1 * m * std::log(s.factor) + 1.0; };
  if (s.mscale && s.mscale_all_dim && *s.mscale != 0 && *s.mscale_all_dim != 0)
    return static_cast<float>(get_mscale(*s.mscale) / get_mscale(*s.mscale_all_dim));
  return static_cast<float>(get_mscale(1.0));
}

}  // namespace

Rope Rope::make(const ModelConfig& c, const std::optional<mx::array>& freq_factors, bool sliding, int head_dim) {
  Rope r;
  if (head_dim == 0) head_dim = c.head_dim;
  // transformers: dim = int(head_dim * partial_rotary_factor); the rest of each head passes through.
  r.dims = static_cast<int>(static_cast<double>(head_dim) * c.partial_rotary_factor);
  if (r.dims < 2 || r.dims % 2 != 0)
    fail("model", "rotary dims head_dim x partial_rotary_factor = " + std::to_string(r.dims) + " must be even");
  // gemma3's sliding layers rotate with their own base (and scaling); otherwise every layer shares one.
  const bool own = sliding && c.sliding_rope_theta.has_value();
  const float theta = own ? *c.sliding_rope_theta : c.rope_theta;
  const auto& scaling = own ? c.sliding_rope_scaling : c.rope_scaling;
  r.base = theta;
  if (freq_factors) {
    // llama.cpp: theta_i = pos * inv_freq_i / factor_i, i.e. period_i = factor_i / inv_freq_i.
    if (scaling) fail("model", "rope_freqs factors and rope_scaling cannot be combined");
    auto exps = mx::divide(mx::arange(0, r.dims, 2, mx::float32), mx::array(static_cast<float>(r.dims)));
    auto periods = mx::power(mx::array(theta), exps);
    r.periods = mx::multiply(periods, mx::astype(*freq_factors, mx::float32));
    return r;
  }
  if (!scaling) return r;
  const auto& s = *scaling;
  if (s.rope_type == "proportional") {
    // transformers' _compute_proportional_rope_parameters: rotate_half over the whole head, inv_freq
    // base^(-2i / head_dim) / factor on the first int(proportion x head_dim // 2) pairs and 0 (period inf: no
    // rotation) on the rest, as mlx-lm's ProportionalRoPE.
    r.dims = head_dim;
    const int angles = static_cast<int>(std::floor(static_cast<double>(s.partial_rotary_factor) * head_dim / 2));
    std::vector<float> p(head_dim / 2, std::numeric_limits<float>::infinity());
    for (int i = 0; i < angles && i < head_dim / 2; ++i)
      p[i] = s.factor * std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
    r.periods = mx::array(p.data(), {static_cast<int>(p.size())}, mx::float32);
    return r;
  }
  if (s.rope_type == "longrope") {
    // transformers _compute_longrope_parameters: inv_freq = 1 / (ext_factor_i * base^(2i/dim)).
    auto periods_of = [&](const std::vector<float>& ext) {
      if (static_cast<int>(ext.size()) != r.dims / 2)
        fail("model", "longrope factors must hold rotary dims / 2 = " + std::to_string(r.dims / 2) + " values");
      std::vector<float> p;
      for (int i = 0; i < r.dims / 2; ++i)
        p.push_back(ext[i] * std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(r.dims)));
      return mx::array(p.data(), {static_cast<int>(p.size())}, mx::float32);
    };
    r.periods = periods_of(s.short_factor);
    r.long_periods = periods_of(s.long_factor);
    r.original_max = s.original_max_position_embeddings;
    r.attention_factor = s.attention_factor.value_or(
        s.factor <= 1.0f ? 1.0f
                         : static_cast<float>(std::sqrt(1.0 + std::log(static_cast<double>(s.factor)) /
                                                                  std::log(static_cast<double>(r.original_max)))));
    r.long_attention_factor = r.attention_factor;
    // PhimoeRotaryEmbedding: short_mscale / long_mscale by the same switch as the periods (transformers 4.56's, and
    // Phi-3.5-MoE's own code; transformers 5 keeps the short periods past the original length, see docs/parity.md).
    if (s.short_mscale) r.attention_factor = *s.short_mscale;
    if (s.long_mscale) r.long_attention_factor = *s.long_mscale;
    return r;
  }
  if (s.rope_type == "yarn") {
    r.periods = yarn_periods(s, theta, r.dims);
    r.attention_factor = yarn_attention_factor(s);
    return r;
  }
  if (s.rope_type == "linear") {
    // transformers divides inv_freq by factor == positions scaled by 1/factor.
    r.scale = 1.0f / s.factor;
  } else if (s.rope_type == "llama3") {
    // transformers _compute_llama3_parameters, expressed as periods (1/inv_freq) for mx::fast::rope.
    const double low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
    const double high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
    std::vector<float> periods;
    for (int i = 0; i < r.dims; i += 2) {
      float inv = 1.0f / std::pow(theta, static_cast<float>(i) / r.dims);
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

namespace {

// longrope's cos/sin x attention_factor == the rotated features x attention_factor (the pass-through
// features of a partial rotary stay as they are).
mx::array scale_rotated(const mx::array& y, int dims, float factor) {
  if (factor == 1.0f) return y;
  auto f = mx::array(factor, y.dtype());
  const int D = y.shape(3);
  if (dims == D) return mx::multiply(y, f);
  auto shape = y.shape();
  shape[3] = dims;
  auto rotated = mx::multiply(mx::slice(y, {0, 0, 0, 0}, shape), f);
  return mx::concatenate({rotated, mx::slice(y, {0, 0, 0, dims}, y.shape())}, 3);
}

}  // namespace

const mx::array* Rope::periods_for(int last_position) const {
  if (long_periods && last_position + 1 > original_max) return &*long_periods;
  return periods ? &*periods : nullptr;
}

float Rope::factor_for(int last_position) const {
  return long_periods && last_position + 1 > original_max ? long_attention_factor : attention_factor;
}

std::optional<kernels::GgmlRope> Rope::kernel_params(const KVCache& cache, int T, int head_dim) const {
  const bool rows = !cache.left_padding().empty();
  kernels::GgmlRope r{dims, head_dim, base, scale, cache.offset(), rows ? cache.row_offsets() : std::vector<int>{}};
  int last = r.offset + T - 1;
  for (int o : r.row_offsets) last = std::max(last, o + T - 1);
  if (traditional || periods_for(last)) return std::nullopt;  // mx::fast::rope's path
  return r;
}

mx::array Rope::operator()(const mx::array& x, int offset) const {
  const int last = offset + x.shape(2) - 1;
  if (const auto* p = periods_for(last))
    return scale_rotated(mx::fast::rope(x, dims, traditional, std::nullopt, scale, offset, *p), dims, factor_for(last));
  if (traditional) return mx::fast::rope(x, dims, true, base, scale, offset);
  return kernels::rope(x, dims, base, scale, offset);  // mx::fast::rope off the CPU
}

mx::array Rope::operator()(const mx::array& x, const std::vector<int>& row_offsets) const {
  int last = 0;
  for (int o : row_offsets) last = std::max(last, o + x.shape(2) - 1);
  mx::array offs(row_offsets.data(), {static_cast<int>(row_offsets.size())}, mx::int32);
  if (const auto* p = periods_for(last))
    return scale_rotated(mx::fast::rope(x, dims, traditional, std::nullopt, scale, offs, *p), dims, factor_for(last));
  if (traditional) return mx::fast::rope(x, dims, true, base, scale, offs);
  return kernels::rope(x, dims, base, scale, row_offsets);
}

Attention Attention::load(const WeightMap& w, const std::string& prefix, const ModelConfig& c,
                          const AttentionOptions& o, int layer) {
  Attention a;
  a.n_heads = c.num_attention_heads;
  a.n_kv_heads = layer_kv_heads(c, layer);
  a.head_dim = layer_head_dim(c, layer);
  if (c.kv_lora_rank > 0) return load_latent(w, prefix, c, a);
  const bool sliding = layer_slides(c, layer);
  a.kv_shared = c.num_kv_shared_layers > 0 && layer >= c.num_hidden_layers - c.num_kv_shared_layers;
  // granite: attention_multiplier is the scale; gemma2/3: query_pre_attn_scalar^-0.5.
  a.scale = c.attention_multiplier
                ? *c.attention_multiplier
                : 1.0f / std::sqrt(c.query_pre_attn_scalar ? *c.query_pre_attn_scalar : static_cast<float>(c.head_dim));
  if (!c.scale_attn_weights) a.scale = 1.0f;  // gpt2: raw q.k scores
  if (c.scale_attn_by_inverse_layer_idx) a.scale /= static_cast<float>(layer + 1);
  if (o.unscaled) a.scale = 1.0f;
  a.softcap = c.attn_logit_softcapping;
  a.clip_qkv = c.clip_qkv;
  // q/k/v biases: the architecture's (qwen2), else the config's own switch for them (qwen2_moe, glm, seed_oss,
  // stablelm, GGUF), else attention_bias (with o_proj's).
  const bool bias = o.qkv_bias || c.qkv_bias.value_or(c.attention_bias);
  const int q_out = a.n_heads * a.head_dim, kv_out = a.n_kv_heads * a.head_dim;
  if (o.fused_qkv) {
    a.qkv_proj = Linear::load(w, prefix + ".qkv_proj", c.hidden_size, q_out + 2 * kv_out, bias);
  } else if (o.fused_qkv_per_head) {
    if (a.n_kv_heads != a.n_heads) fail("model", "query_key_value holds as many k / v heads as q heads");
    a.qkv_proj = Linear::load(w, prefix + ".query_key_value", c.hidden_size, 3 * q_out, bias);
    a.qkv_per_head = true;
  } else if (a.kv_shared) {  // (a checkpoint may still hold k_proj / v_proj here: transformers ignores them)
    a.q_proj = Linear::load(w, prefix + ".q_proj", c.hidden_size, q_out, bias);
  } else {
    a.output_gate = c.attention_output_gate;
    a.q_proj = Linear::load(w, prefix + ".q_proj", c.hidden_size, a.output_gate ? 2 * q_out : q_out, bias);
    a.k_proj = Linear::load(w, prefix + ".k_proj", c.hidden_size, kv_out, bias);
    // gemma4_text's attention_k_eq_v: a full-attention layer's values are its key projection.
    a.values_from_keys = c.attention_k_eq_v && !sliding;
    if (!a.values_from_keys) a.v_proj = Linear::load(w, prefix + ".v_proj", c.hidden_size, kv_out, bias);
  }
  a.o_proj = Linear::load(w, prefix + "." + o.o_proj, q_out, c.hidden_size, c.attention_bias);
  if (o.qk_norm_after_rope) {
    a.q_norm = RMSNorm::load(w, prefix + ".query_layernorm.weight", a.head_dim, c.rms_norm_eps);
    a.k_norm = RMSNorm::load(w, prefix + ".key_layernorm.weight", a.head_dim, c.rms_norm_eps);
    a.norm_after_rope = true;
  } else if (o.qk_norm) {
    a.q_norm = RMSNorm::load(w, prefix + "." + o.q_norm + ".weight", a.head_dim, c.rms_norm_eps, o.norm_plus_one);
    if (!a.kv_shared)
      a.k_norm = RMSNorm::load(w, prefix + "." + o.k_norm + ".weight", a.head_dim, c.rms_norm_eps, o.norm_plus_one);
  } else if (o.qk_norm_full) {
    a.q_norm = RMSNorm::load(w, prefix + ".q_norm.weight", q_out, c.rms_norm_eps);
    a.k_norm = RMSNorm::load(w, prefix + ".k_norm.weight", kv_out, c.rms_norm_eps);
    a.full_qk_norm = true;
  } else if (o.qk_layer_norm) {
    a.q_norm = RMSNorm::load_head_layer_norm(w, prefix + ".q_norm.weight", a.n_heads, a.head_dim, c.rms_norm_eps);
    a.k_norm = RMSNorm::load_head_layer_norm(w, prefix + ".k_norm.weight", a.n_kv_heads, a.head_dim, c.rms_norm_eps);
  }
  if (o.v_norm) {  // gemma4_text: Gemma4RMSNorm(with_scale=False) over each value head
    RMSNorm v;
    v.eps = c.rms_norm_eps;
    a.v_norm = v;
  }
  const bool rotary = c.rope_layers.empty() || (layer < static_cast<int>(c.rope_layers.size()) && c.rope_layers[layer]);
  if (rotary) {
    a.rope = Rope::make(c, take_optional(w, "model.rope_freq_factors", {a.head_dim / 2}), sliding, a.head_dim);
    a.rope->traditional = o.rope_traditional;
  }
  if (o.l2_qk_norm && a.rope) {  // transformers' Llama4TextL2Norm (eps rms_norm_eps) after apply_rotary_emb
    RMSNorm l2;
    l2.eps = c.rms_norm_eps;
    a.q_norm = a.k_norm = l2;
    a.norm_after_rope = true;
  }
  if (o.sinks) a.sinks = take(w, prefix + ".sinks", {a.n_heads});
  // llama4_text's attn_temperature_tuning scales the queries of its layers without RoPE alone.
  if (!c.llama4_scaling_nope || !a.rope) {
    a.llama4_beta = c.llama4_scaling_beta;
    a.llama4_positions = c.llama4_scaling_positions;
    a.llama4_shift = c.llama4_scaling_nope ? 1 : 0;
  }
  return a;
}

// deepseek_v2 / v3 (LatentAttention): one cached head of c.head_dim (latent + shared key) for every query head.
Attention Attention::load_latent(const WeightMap& w, const std::string& prefix, const ModelConfig& c, Attention a) {
  a.mla = LatentAttention::load(w, prefix, c);
  a.o_proj = Linear::load(w, prefix + ".o_proj", a.n_heads * c.v_head_dim, c.hidden_size, c.attention_bias);
  // transformers' yarn_apply_mscale: qk_head_dim^-0.5, times mscale(factor, mscale_all_dim)^2 for a scaled rope.
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.qk_nope_head_dim + c.qk_rope_head_dim));
  if (c.rope_scaling && c.rope_scaling->mscale_all_dim && *c.rope_scaling->mscale_all_dim != 0 &&
      c.rope_scaling->factor > 1.0f) {
    const double m = 0.1 * *c.rope_scaling->mscale_all_dim * std::log(c.rope_scaling->factor) + 1.0;
    a.scale = static_cast<float>(a.scale * m * m);
  }
  // The rope of q_pe / k_pe alone: transformers' config.head_dim is qk_rope_head_dim for these types.
  ModelConfig rc = c;
  rc.head_dim = c.qk_rope_head_dim;
  rc.partial_rotary_factor = c.partial_rotary_factor;  // (only glm4_moe_lite's config can set it)
  a.rope = Rope::make(rc);
  a.rope->traditional = c.rope_interleave;
  return a;
}

// transformers' get_llama_4_attn_scale (ministral3): 1 + beta * log(1 + floor(p / positions)) for each query
// position p (each row's own in a left-padded batch), in float32, then in the queries' dtype; [B | 1, 1, T, 1].
// Llama4TextAttention's attn_temperature_tuning is the same of p + 1 (`shift`).
static mx::array llama4_query_scale(const KVCache& cache, int B, int T, float beta, int positions, int shift,
                                    mx::Dtype dtype) {
  auto p = mx::arange(static_cast<double>(shift), static_cast<double>(T + shift), mx::float32);
  if (cache.left_padding().empty()) {
    p = mx::reshape(mx::add(p, mx::array(static_cast<float>(cache.offset()))), {1, 1, T, 1});
  } else {
    const auto rows = cache.row_offsets();
    auto offsets = mx::astype(mx::array(rows.data(), {B, 1}, mx::int32), mx::float32);
    p = mx::reshape(mx::add(offsets, mx::reshape(p, {1, T})), {B, 1, T, 1});
  }
  auto steps = mx::floor(mx::divide(p, mx::array(static_cast<float>(positions))));
  auto s = mx::add(mx::array(1.0f), mx::multiply(mx::array(beta), mx::log(mx::add(mx::array(1.0f), steps))));
  return mx::astype(s, dtype);
}

// A cache's keys or values in the queries' dtype (a kv_cache_dtype cache stores them in another).
static mx::array in_dtype(const mx::array& a, mx::Dtype dtype) { return a.dtype() == dtype ? a : mx::astype(a, dtype); }

static mx::array eager_attention(const mx::array& q, const mx::array& keys, const mx::array& values, float scale,
                                 const std::optional<float>& softcap, const std::optional<mx::array>& sinks,
                                 const AttentionMask& mask) {
  // transformers' eager_attention_forward: scores * scaling (gemma2: / softcap, tanh, * softcap), then the
  // mask, softmax in float32 (gpt_oss: over the scores and the head's sink logit, whose column is then
  // dropped). Grouped heads: q head h reads kv head h / (H / KV) (repeat_kv).
  const int B = q.shape(0), H = q.shape(1), T = q.shape(2), D = q.shape(3);
  const int KV = keys.shape(1), L = keys.shape(2), rep = H / KV;
  auto qg = mx::reshape(q, {B, KV, rep * T, D});
  auto s = mx::multiply(mx::matmul(qg, mx::transpose(keys, {0, 1, 3, 2})), mx::array(scale, q.dtype()));
  if (softcap) {
    auto cap = mx::array(*softcap, s.dtype());
    s = mx::multiply(mx::tanh(mx::divide(s, cap)), cap);
  }
  s = mx::reshape(mx::astype(s, mx::float32), {B, KV, rep, T, L});
  std::optional<mx::array> m;
  if (mask.array) {
    m = *mask.array;
    if (m->ndim() == 4) m = mx::expand_dims(*m, 2);  // [B, 1, T, L] -> [B, 1, 1, T, L]
  } else if (mask.kind == AttentionMask::Kind::Causal) {
    // Aligned to the last key, as sdpa's "causal": query i sees keys j <= L - T + i.
    auto qi = mx::reshape(mx::arange(L - T, L, mx::int32), {T, 1});
    m = mx::less_equal(mx::reshape(mx::arange(L, mx::int32), {1, L}), qi);
  }
  if (m) {
    s = m->dtype() == mx::bool_ ? mx::where(*m, s, mx::array(-std::numeric_limits<float>::infinity()))
                                : mx::add(s, mx::astype(*m, mx::float32));
  }
  std::optional<mx::array> p;
  if (sinks) {
    auto sink = mx::broadcast_to(mx::reshape(mx::astype(*sinks, mx::float32), {1, KV, rep, 1, 1}), {B, KV, rep, T, 1});
    auto all = mx::softmax(mx::concatenate({s, sink}, -1), -1);
    p = mx::slice(all, {0, 0, 0, 0, 0}, {B, KV, rep, T, L});
  } else {
    p = mx::softmax(s, -1);
  }
  auto o = mx::matmul(mx::reshape(mx::astype(*p, q.dtype()), {B, KV, rep * T, L}), values);
  return mx::reshape(o, {B, H, T, D});
}

// An RMSNorm over a feature dimension split across `group`: the sum of squares is summed over the
// ranks, then each rank scales its own features (float32, as mx::fast::rms_norm computes).
static mx::array sharded_rms_norm(const mx::array& y, const RMSNorm& norm, int full_dim,
                                  const mx::distributed::Group& group) {
  auto y32 = mx::astype(y, mx::float32);
  auto ss = mx::distributed::all_sum(mx::sum(mx::square(y32), -1, true), group);
  auto inv = mx::rsqrt(mx::add(mx::divide(ss, mx::array(static_cast<float>(full_dim))), mx::array(norm.eps)));
  return mx::astype(mx::multiply(mx::multiply(y32, inv), mx::astype(*norm.weight, mx::float32)), y.dtype());
}

// Several projections of one input (q, k and v; gate and up) as one graph node where all are llama.cpp
// blocks of one type with nothing after the product but a bias (no LoRA, no tensor-parallel sum): a decode
// step has a few hundred such products and each node and thread hand-off costs microseconds. Outputs are
// bit for bit those of the Linears one by one.
static bool one_node(std::initializer_list<const Linear*> ls) {
  const Linear& first = **ls.begin();
  bool fuse = first.ggml_type.has_value();
  for (const Linear* l : ls)
    fuse = fuse && l->ggml_type == first.ggml_type && l->int8_activations == first.int8_activations && !l->lora_a &&
           !l->reduce && l->q8_packed.has_value() == first.q8_packed.has_value();
  return fuse;
}

static std::pair<std::vector<mx::array>, std::vector<mx::array>> weights_of(std::initializer_list<const Linear*> ls) {
  std::vector<mx::array> ws, packed;
  for (const Linear* l : ls) {
    ws.push_back(*l->weight);
    if (l->q8_packed) packed.push_back(*l->q8_packed);
  }
  return {ws, packed};
}

static void add_biases(std::vector<mx::array>& out, std::initializer_list<const Linear*> ls) {
  size_t i = 0;
  for (const Linear* l : ls) {
    if (l->bias) out[i] = mx::add(out[i], *l->bias);
    ++i;
  }
}

static std::vector<mx::array> project(const mx::array& x, std::initializer_list<const Linear*> ls) {
  std::vector<mx::array> out;
  if (!one_node(ls)) {
    for (const Linear* l : ls) out.push_back((*l)(x));
    return out;
  }
  const Linear& first = **ls.begin();
  auto [ws, packed] = weights_of(ls);
  out = kernels::ggml_matmul_multi(x, ws, *first.ggml_type, first.int8_activations, packed);
  add_biases(out, ls);
  return out;
}

// project() with `f` in the same node (kernels::ggml_matmul_fused); nullopt where that does not apply. A
// bias goes between a product and the op after it, so only a norm before may come with one.
static std::optional<std::vector<mx::array>> project_fused(const mx::array& x, std::initializer_list<const Linear*> ls,
                                                           const kernels::GgmlFusion& f) {
  if (!one_node(ls)) return std::nullopt;
  for (const Linear* l : ls)
    if (l->bias && (f.swiglu || f.residual || f.rope)) return std::nullopt;
  const Linear& first = **ls.begin();
  auto [ws, packed] = weights_of(ls);
  auto out = kernels::ggml_matmul_fused(x, ws, *first.ggml_type, first.int8_activations, packed, f);
  if (out) add_biases(*out, ls);
  return out;
}

// The norm of `around` (and `f`'s other ops) fused into the products of x where it can be; nullopt otherwise.
static std::optional<std::vector<mx::array>> project_normed(const mx::array& x, std::initializer_list<const Linear*> ls,
                                                            const PreNormResidual& around, kernels::GgmlFusion f) {
  if (around.norm) {
    f.norm_weight = around.norm->kernel_weight();
    if (!f.norm_weight) return std::nullopt;
    f.eps = around.norm->eps;
  }
  return project_fused(x, ls, f);
}

// residual + l(x), the add in the product's node where it can be.
static mx::array add_projected(const Linear& l, const mx::array& x, const mx::array* residual) {
  if (!residual) return l(x);
  kernels::GgmlFusion f;
  f.residual = *residual;
  if (auto y = project_fused(x, {&l}, f)) return (*y)[0];
  return mx::add(*residual, l(x));
}

mx::array Attention::operator()(const mx::array& x, KVCache& cache, const AttentionMask* mask,
                                const PreNormResidual& around, SharedKV* share) const {
  const int B = x.shape(0), T = x.shape(1);
  auto heads = [&](const mx::array& y, int n, const std::optional<RMSNorm>& norm) {
    std::optional<mx::array> normed;
    if (full_qk_norm && norm)
      normed =
          norm_group ? sharded_rms_norm(y, *norm, n == n_heads ? q_norm_dim : k_norm_dim, *norm_group) : (*norm)(y);
    // transformers' OlmoAttention / OlmoeAttention clamp the projections (olmoe's after its whole-projection norms).
    auto whole = normed ? *normed : y;
    if (clip_qkv) whole = mx::clip(whole, mx::array(-*clip_qkv, whole.dtype()), mx::array(*clip_qkv, whole.dtype()));
    // One position (decode): [B, 1, n x head_dim] already is [B, n, 1, head_dim] in memory, so a reshape
    // is the head split (no transpose view to build, and a contiguous result).
    auto h = mx::reshape(whole, T == 1 ? mx::Shape{B, n, 1, head_dim} : mx::Shape{B, T, n, head_dim});
    // Per-head weights ([n, 1, head_dim], cohere) scale the heads-first layout.
    const bool per_head = norm && norm->weight && norm->weight->ndim() > 1;
    if (norm && !full_qk_norm && !per_head) h = (*norm)(h);
    if (T != 1) h = mx::transpose(h, {0, 2, 1, 3});
    return per_head ? (*norm)(h) : h;
  };
  AttentionMask own;
  if (!mask) {
    own = cache.make_mask(T);  // before update(), as mlx-lm asks make_mask before update_and_fetch
    mask = &own;
  }
  // A left-padded batch rotates each row from its own position, as transformers' position_ids do.
  auto rotate = [&](const mx::array& h) {
    if (!rope) return h;
    return cache.left_padding().empty() ? (*rope)(h, cache.offset()) : (*rope)(h, cache.row_offsets());
  };
  if (mla) {  // one cached head, [latent; k_pe], as keys and values
    auto [q, entry] = mla->project(pre_norm(x, around), rotate);
    auto o = attend(q, entry, entry, cache, *mask);
    return add_projected(o_proj, mla->output(o), around.residual);
  }
  std::optional<mx::array> xq, xk, xv;
  bool rotated = false;
  if (qkv_proj && qkv_per_head) {  // gpt_neox: [q; k; v] of each head in turn
    auto y = mx::reshape((*qkv_proj)(pre_norm(x, around)), {B, T, n_heads, 3 * head_dim});
    auto part = [&](int i) {
      return mx::reshape(mx::slice(y, {0, 0, 0, i * head_dim}, {B, T, n_heads, (i + 1) * head_dim}),
                         {B, T, n_heads * head_dim});
    };
    xq = part(0);
    xk = part(1);
    xv = part(2);
  } else if (qkv_proj) {  // phi3: [q; k; v] rows of one projection
    auto y = (*qkv_proj)(pre_norm(x, around));
    const int qo = n_heads * head_dim, ko = n_kv_heads * head_dim;
    xq = mx::slice(y, {0, 0, 0}, {B, T, qo});
    xk = mx::slice(y, {0, 0, qo}, {B, T, qo + ko});
    xv = mx::slice(y, {0, 0, qo + ko}, {B, T, qo + 2 * ko});
  } else if (kv_shared) {  // gemma4_text: the queries alone
    if (!share || !share->keys || !share->values)
      fail("model", "a layer that shares keys and values ran before the layer that computes them");
    xq = q_proj(pre_norm(x, around));
  } else if (values_from_keys) {  // gemma4_text (attention_k_eq_v): v is k's projection, before k_norm
    auto y = project(pre_norm(x, around), {&q_proj, &k_proj});
    xq = y[0];
    xk = xv = y[1];
  } else {
    // q and k rotated in the products' node too where the rope is kernels::rope and nothing comes between.
    kernels::GgmlFusion f;
    if (rope && !q_norm && !k_norm && !clip_qkv && !output_gate) f.rope = rope->kernel_params(cache, T, head_dim);
    auto y = around.norm || f.rope ? project_normed(x, {&q_proj, &k_proj, &v_proj}, around, f) : std::nullopt;
    if (y && f.rope) rotated = true;
    if (!y) y = project(pre_norm(x, around), {&q_proj, &k_proj, &v_proj});
    xq = (*y)[0];
    xk = (*y)[1];
    xv = (*y)[2];
  }
  std::optional<mx::array> gate;
  if (output_gate) {  // Qwen3NextAttention: q_proj's rows are [q; gate] per head
    auto both = mx::reshape(*xq, {B, T, n_heads, 2 * head_dim});
    xq = mx::reshape(mx::slice(both, {0, 0, 0, 0}, {B, T, n_heads, head_dim}), {B, T, n_heads * head_dim});
    gate = mx::reshape(mx::slice(both, {0, 0, 0, head_dim}, {B, T, n_heads, 2 * head_dim}), {B, T, n_heads * head_dim});
  }
  const std::optional<RMSNorm> none;
  auto q = heads(*xq, n_heads, norm_after_rope ? none : q_norm);
  // (a kv_shared layer's keys and values arrive normed and rotated: share)
  std::optional<mx::array> k = kv_shared ? share->keys : heads(*xk, n_kv_heads, norm_after_rope ? none : k_norm);
  if (!rotated) {
    q = rotate(q);
    if (!kv_shared) k = rotate(*k);
  }
  if (norm_after_rope) {  // transformers' HunYuanDenseV1Attention: rotary, then query_layernorm / key_layernorm
    q = (*q_norm)(q);
    if (!kv_shared) k = (*k_norm)(*k);
  }
  if (llama4_beta)
    q = mx::multiply(q, llama4_query_scale(cache, B, T, *llama4_beta, llama4_positions, llama4_shift, q.dtype()));
  auto v = kv_shared ? *share->values : heads(*xv, n_kv_heads, v_norm);
  if (share && !kv_shared) *share = SharedKV{*k, v};
  auto o = attend(q, *k, v, cache, *mask);
  const mx::Shape merged{B, T, n_heads * head_dim};
  auto out = T == 1 ? mx::reshape(o, merged) : mx::reshape(mx::transpose(o, {0, 2, 1, 3}), merged);
  if (gate) out = mx::multiply(out, mx::sigmoid(*gate));
  return add_projected(o_proj, out, around.residual);
}

mx::array Attention::attend(const mx::array& q, const mx::array& k, const mx::array& v, KVCache& cache,
                            const AttentionMask& m) const {
  const AttentionMask* mask = &m;
  std::optional<mx::array> o;
  if (softcap || sinks) {
    if (dynamic_cast<QuantizedKVCache*>(&cache))
      fail("model", softcap
                        ? "attention soft-capping (attn_logit_softcapping) with a quantized KV cache is not supported"
                        : "attention sinks (gpt_oss) with a quantized KV cache are not supported");
    auto [keys, values] = cache.update(k, v);
    o = eager_attention(q, in_dtype(keys, q.dtype()), in_dtype(values, q.dtype()), scale, softcap, sinks, *mask);
  } else if (auto* qc = dynamic_cast<QuantizedKVCache*>(&cache)) {
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
        o = mx::fast::scaled_dot_product_attention(q, in_dtype(keys, q.dtype()), in_dtype(values, q.dtype()), scale,
                                                   "array", *mask->array);
        break;
    }
  }
  return *o;
}

SwiGLU::Act parse_activation(const std::string& name) {
  if (name == "silu" || name == "swish") return SwiGLU::Act::Silu;
  if (name == "gelu") return SwiGLU::Act::Gelu;
  // gelu_fast: transformers' FastGELUActivation, the same tanh approximation (SantaCoder's activation).
  if (name == "gelu_pytorch_tanh" || name == "gelu_new" || name == "gelu_fast") return SwiGLU::Act::GeluTanh;
  if (name == "relu2") return SwiGLU::Act::Relu2;
  if (name == "xielu") return SwiGLU::Act::Xielu;
  fail("model", "unsupported hidden_act '" + name +
                    "' (supported: silu, gelu, gelu_pytorch_tanh, gelu_new, gelu_fast, relu2, xielu)");
}

SwiGLU SwiGLU::load(const WeightMap& w, const std::string& prefix, const ModelConfig& c, Kind kind,
                    const PlainMlpNames& names, const GatedMlpNames& gated) {
  SwiGLU m;
  m.act = parse_activation(c.hidden_act);
  m.intermediate = c.intermediate_size;
  m.kind = kind;
  if (kind == Kind::Plain) {  // starcoder2: c_fc -> act -> c_proj
    m.up_proj = Linear::load(w, prefix + "." + names.in, c.hidden_size, c.intermediate_size, c.mlp_bias);
    m.down_proj = Linear::load(w, prefix + "." + names.out, c.intermediate_size, c.hidden_size, c.mlp_bias);
    if (m.act == Act::Xielu) m.xielu = Xielu::load(w, prefix + ".act_fn");
    return m;
  }
  if (m.act == Act::Xielu) fail("model", "the xielu activation is implemented for ungated MLPs only (apertus)");
  if (kind == Kind::GatedFused) {
    m.gate_up_proj = Linear::load(w, prefix + ".gate_up_proj", c.hidden_size, 2 * c.intermediate_size, c.mlp_bias);
  } else {
    m.gate_proj = Linear::load(w, prefix + "." + gated.gate, c.hidden_size, c.intermediate_size, c.mlp_bias);
    m.up_proj = Linear::load(w, prefix + "." + gated.up, c.hidden_size, c.intermediate_size, c.mlp_bias);
  }
  m.down_proj = Linear::load(w, prefix + "." + gated.down, c.intermediate_size, c.hidden_size, c.mlp_bias);
  return m;
}

mx::array SwiGLU::operator()(const mx::array& x, const PreNormResidual& around) const {
  if (kind == Kind::Plain)
    return add_projected(down_proj,
                         xielu ? (*xielu)(up_proj(pre_norm(x, around))) : activation(act, up_proj(pre_norm(x, around))),
                         around.residual);
  std::optional<mx::array> mid;
  if (kind == Kind::Gated && act == Act::Silu)  // silu(gate) * up in the products' node
    if (auto y = project_normed(x, {&gate_proj, &up_proj}, around, {.swiglu = true})) mid = (*y)[0];
  if (!mid) {
    const auto in = pre_norm(x, around);
    std::optional<mx::array> gate, up;
    if (gate_up_proj) {  // phi3: gate, up_states = gate_up_proj(x).chunk(2, dim=-1)
      auto y = (*gate_up_proj)(in);
      auto end = y.shape();
      end.back() = intermediate;
      gate = mx::slice(y, mx::Shape(y.ndim(), 0), end);
      auto start = mx::Shape(y.ndim(), 0);
      start.back() = intermediate;
      up = mx::slice(y, start, y.shape());
    } else {
      auto y = project(in, {&gate_proj, &up_proj});
      gate = y[0];
      up = y[1];
    }
    mid = gated_activation(act, *gate, *up);
  }
  return add_projected(down_proj, *mid, around.residual);
}

mx::array gated_activation(SwiGLU::Act act, const mx::array& gate, const mx::array& up) {
  if (act == SwiGLU::Act::Silu) return kernels::swiglu(gate, up);
  return mx::multiply(activation(act, gate), up);
}

mx::array activation(SwiGLU::Act act, const mx::array& g) {
  using Act = SwiGLU::Act;
  if (act == Act::Silu) return mx::multiply(g, mx::sigmoid(g));
  if (act == Act::Xielu) fail("model", "xielu needs its layer's learned parameters (Xielu)");
  if (act == Act::Relu2) {  // transformers' ReLUSquaredActivation: square(relu(x))
    auto r = mx::maximum(g, mx::array(0.0f, g.dtype()));
    return mx::multiply(r, r);
  }
  auto half = mx::array(0.5f, g.dtype()), one = mx::array(1.0f, g.dtype());
  if (act == Act::Gelu)  // erf form (torch gelu, approximate='none')
    return mx::multiply(mx::multiply(half, g),
                        mx::add(one, mx::erf(mx::multiply(g, mx::array(float(M_SQRT1_2), g.dtype())))));
  // torch gelu(approximate='tanh'): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  auto inner =
      mx::multiply(mx::array(float(std::sqrt(2.0 / std::numbers::pi)), g.dtype()),
                   mx::add(g, mx::multiply(mx::array(0.044715f, g.dtype()), mx::multiply(g, mx::multiply(g, g)))));
  return mx::multiply(mx::multiply(half, g), mx::add(one, mx::tanh(inner)));
}

}  // namespace mlxgp::layers
