// ShortConv: short_conv.h.
#include "models/short_conv.h"

#include "mlxgp/error.h"
#include "mlxgp/recurrent_cache.h"

namespace mlxgp::layers {

ShortConv ShortConv::load(const WeightMap& w, const std::string& prefix, const ModelConfig& c) {
  ShortConv s;
  s.hidden = c.hidden_size;
  s.kernel = c.conv_kernel;
  if (s.kernel < 1) fail("config", "conv_L_cache must be at least 1");
  s.in_proj = Linear::load(w, prefix + ".in_proj", s.hidden, 3 * s.hidden, c.conv_bias);
  s.out_proj = Linear::load(w, prefix + ".out_proj", s.hidden, s.hidden, c.conv_bias);
  s.weight = load_conv_kernel(w, prefix + ".conv.weight", s.hidden, s.kernel);
  if (c.conv_bias) s.bias = take(w, prefix + ".conv.bias", {s.hidden});
  return s;
}

mx::array ShortConv::operator()(const mx::array& x, KVCache& cache) const {
  const int B = x.shape(0), T = x.shape(1), D = hidden, K = kernel;
  auto* rc = dynamic_cast<RecurrentCache*>(&cache);
  if (!rc && cache.offset() != 0)
    fail("model", "a short-convolution layer needs its RecurrentCache (Model::make_caches) to continue a sequence");
  auto bcx = in_proj(x);
  auto part = [&](int i) { return mx::slice(bcx, {0, 0, i * D}, {B, T, (i + 1) * D}); };
  auto gate_in = part(0), gate_out = part(1), value = part(2);
  auto bx = mx::multiply(gate_in, value);
  // A left-padded row's padding leaves its state at zeros, so the row computes what it computes alone (mlx-lm
  // masks B * x; transformers zeroes the layer's input, the same without conv_bias).
  if (rc)
    if (auto m = rc->token_mask(T)) bx = mx::where(mx::expand_dims(*m, -1), bx, mx::zeros({}, bx.dtype()));
  std::optional<mx::array> state = rc ? rc->state(0) : std::nullopt;
  if (state && (state->shape(0) != B || state->shape(1) != K - 1 || state->shape(2) != D))
    fail("cache", "the convolution state does not match the batch");
  auto history = state ? mx::astype(*state, bx.dtype()) : mx::zeros({B, K - 1, D}, bx.dtype());
  auto full = K > 1 ? mx::concatenate({history, bx}, 1) : bx;  // [B, K - 1 + T, D]
  if (rc) {
    rc->set_state(0, mx::slice(full, {0, T, 0}, {B, T + K - 1, D}));
    rc->advance(T);
  }
  auto out = causal_depthwise_conv(full, weight, T);
  if (bias) out = mx::add(out, mx::astype(*bias, out.dtype()));
  return out_proj(mx::multiply(gate_out, out));
}

mx::array load_conv_kernel(const WeightMap& w, const std::string& name, int channels, int kernel) {
  mx::Shape stored{channels, 1, kernel};  // as found, when it is one of the three layouts
  if (auto it = w.find(name); it != w.end())
    for (const mx::Shape& shape : {mx::Shape{channels, kernel, 1}, mx::Shape{channels, kernel}})
      if (it->second.shape() == shape) stored = shape;
  return take(w, name, stored);  // (names a missing or misshapen tensor)
}

mx::array causal_depthwise_conv(const mx::array& full, const mx::array& weight, int T) {
  const int B = full.shape(0), D = full.shape(2), K = full.shape(1) - T + 1;
  if (K < 1 || static_cast<int>(weight.size()) != D * K) fail("model", "the convolution's kernel does not match");
  // Summed in float32 and rounded once, as torch's conv1d accumulates a half-precision convolution.
  auto f = mx::astype(full, mx::float32);
  auto w = mx::astype(mx::reshape(weight, {D, K}), mx::float32);
  std::optional<mx::array> out;
  for (int k = 0; k < K; ++k) {
    auto term =
        mx::multiply(mx::slice(f, {0, k, 0}, {B, k + T, D}), mx::reshape(mx::slice(w, {0, k}, {D, k + 1}), {D}));
    out = out ? mx::add(*out, term) : term;
  }
  return mx::astype(*out, full.dtype());
}

}  // namespace mlxgp::layers
