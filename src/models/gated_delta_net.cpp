// GatedDeltaNet: gated_delta_net.h.
#include "models/gated_delta_net.h"

#include "mlxgp/error.h"
#include "mlxgp/recurrent_cache.h"
#include "models/short_conv.h"

namespace mlxgp::layers {

namespace {

mx::array last_axis(const mx::array& a, int from, int to) {
  auto start = mx::Shape(a.ndim(), 0), stop = a.shape();
  start.back() = from;
  stop.back() = to;
  return mx::slice(a, start, stop);
}

// transformers' l2norm (as the FLA library computes it): x * rsqrt(sum(x^2) + eps) over the last axis.
mx::array l2_normalize(const mx::array& x) {
  return mx::multiply(x, mx::rsqrt(mx::add(mx::sum(mx::square(x), -1, true), mx::array(1e-6f))));
}

}  // namespace

GatedDeltaNet GatedDeltaNet::load(const WeightMap& w, const std::string& prefix, const ModelConfig& c) {
  GatedDeltaNet g;
  g.key_heads = c.linear_key_heads;
  g.value_heads = c.linear_value_heads;
  g.key_dim = c.linear_key_dim;
  g.value_dim = c.linear_value_dim;
  g.kernel = c.linear_conv_kernel;
  g.eps = c.rms_norm_eps;
  g.tiled = c.linear_value_heads_tiled;
  const int H = c.hidden_size, keys = g.key_heads * g.key_dim, values = g.value_heads * g.value_dim;
  auto has = [&](const std::string& name) { return w.count(prefix + name + ".weight") > 0; };
  if (has(".in_proj_qkvz")) {
    g.in_qkvz = Linear::load(w, prefix + ".in_proj_qkvz", H, 2 * keys + 2 * values, false);
  } else {
    g.in_qkv = Linear::load(w, prefix + ".in_proj_qkv", H, 2 * keys + values, false);
    g.in_z = Linear::load(w, prefix + ".in_proj_z", H, values, false);
  }
  if (has(".in_proj_ba")) {
    g.in_ba = Linear::load(w, prefix + ".in_proj_ba", H, 2 * g.value_heads, false);
  } else {
    g.in_b = Linear::load(w, prefix + ".in_proj_b", H, g.value_heads, false);
    g.in_a = Linear::load(w, prefix + ".in_proj_a", H, g.value_heads, false);
  }
  g.out_proj = Linear::load(w, prefix + ".out_proj", values, H, false);
  g.conv_weight = load_conv_kernel(w, prefix + ".conv1d.weight", g.conv_channels(), g.kernel);
  if (w.count(prefix + ".A")) g.a = take(w, prefix + ".A", {g.value_heads});
  else g.a_log = take(w, prefix + ".A_log", {g.value_heads});
  g.dt_bias = take(w, prefix + ".dt_bias", {g.value_heads});
  g.norm_weight = take(w, prefix + ".norm.weight", {g.value_dim});
  return g;
}

mx::array GatedDeltaNet::operator()(const mx::array& x, KVCache& cache) const {
  const int B = x.shape(0), T = x.shape(1), Hk = key_heads, Hv = value_heads, Dk = key_dim, Dv = value_dim;
  const int C = conv_channels(), K = kernel, r = Hv / Hk;
  auto* rc = dynamic_cast<RecurrentCache*>(&cache);
  if (!rc && cache.offset() != 0)
    fail("model", "a gated delta net layer needs its RecurrentCache (Model::make_caches) to continue a sequence");
  if (rc && rc->slots() != 2) fail("cache", "a gated delta net layer needs a recurrent cache of two state slots");
  std::optional<mx::array> mixed, z, b, alpha;  // mixed [B, T, C] = [q; k; v]; z [B, T, Hv, Dv]; b, alpha [B, T, Hv]
  if (in_qkvz) {  // Qwen3NextGatedDeltaNet.fix_query_key_value_ordering: grouped by key head
    auto qkvz = mx::reshape((*in_qkvz)(x), {B, T, Hk, 2 * Dk + 2 * r * Dv});
    auto q = mx::reshape(last_axis(qkvz, 0, Dk), {B, T, Hk * Dk});
    auto k = mx::reshape(last_axis(qkvz, Dk, 2 * Dk), {B, T, Hk * Dk});
    auto v = mx::reshape(last_axis(qkvz, 2 * Dk, 2 * Dk + r * Dv), {B, T, Hv * Dv});
    z = mx::reshape(last_axis(qkvz, 2 * Dk + r * Dv, 2 * Dk + 2 * r * Dv), {B, T, Hv, Dv});
    mixed = mx::concatenate({q, k, v}, -1);
  } else {
    mixed = (*in_qkv)(x);
    z = mx::reshape((*in_z)(x), {B, T, Hv, Dv});
  }
  if (in_ba) {  // [b..., a...] per key head
    auto ba = mx::reshape((*in_ba)(x), {B, T, Hk, 2 * r});
    b = mx::reshape(last_axis(ba, 0, r), {B, T, Hv});
    alpha = mx::reshape(last_axis(ba, r, 2 * r), {B, T, Hv});
  } else {
    b = (*in_b)(x);
    alpha = (*in_a)(x);
  }
  // A left-padded row's padding leaves both states as they are, so the row computes what it computes alone
  // (mlx-lm masks the convolution's input and the state update; transformers zeroes the layer's input, which
  // leaves a zero state zero).
  std::optional<mx::array> tokens = rc ? rc->token_mask(T) : std::nullopt;  // [B, T]
  if (tokens) mixed = mx::where(mx::expand_dims(*tokens, -1), *mixed, mx::zeros({}, mixed->dtype()));
  // The causal convolution over the last K - 1 inputs and this forward's, then SiLU.
  std::optional<mx::array> conv_state = rc ? rc->state(0) : std::nullopt;
  if (conv_state && (conv_state->shape() != mx::Shape{B, K - 1, C}))
    fail("cache", "the convolution state does not match the batch");
  auto history = conv_state ? mx::astype(*conv_state, mixed->dtype()) : mx::zeros({B, K - 1, C}, mixed->dtype());
  auto full = K > 1 ? mx::concatenate({history, *mixed}, 1) : *mixed;
  // SiLU in float32, rounded once to the input's dtype (torch's silu of a half-precision tensor).
  auto conv = mx::astype(causal_depthwise_conv(full, conv_weight, T), mx::float32);
  conv = mx::astype(mx::multiply(conv, mx::sigmoid(conv)), mixed->dtype());
  // Heads in float32 ([B, heads, T, dim]), q and k L2-normalised, q scaled by Dk^-0.5; each key head serves r value
  // heads in turn (repeat_interleave), or every Hk-th value head (llama.cpp's tiled order: ggml_repeat).
  auto heads = [&](int from, int n, int d) {
    auto h = mx::reshape(last_axis(conv, from, from + n * d), {B, T, n, d});
    return mx::transpose(mx::astype(h, mx::float32), {0, 2, 1, 3});
  };
  auto q = l2_normalize(heads(0, Hk, Dk));
  auto k = l2_normalize(heads(Hk * Dk, Hk, Dk));
  auto v = heads(2 * Hk * Dk, Hv, Dv);
  q = mx::multiply(q, mx::array(1.0f / std::sqrt(static_cast<float>(Dk))));
  if (r > 1) {
    q = tiled ? mx::tile(q, {1, r, 1, 1}) : mx::repeat(q, r, 1);
    k = tiled ? mx::tile(k, {1, r, 1, 1}) : mx::repeat(k, r, 1);
  }
  // beta = sigmoid(b) in b's dtype (transformers rounds it there before its float32 kernel); g = A softplus(alpha +
  // dt_bias) with A = -exp(A_log), in float32.
  auto beta = mx::transpose(mx::astype(mx::sigmoid(*b), mx::float32), {0, 2, 1});  // [B, Hv, T]
  auto dt = mx::add(mx::astype(*alpha, mx::float32), mx::astype(dt_bias, mx::float32));
  auto softplus = mx::logaddexp(dt, mx::zeros({}, mx::float32));
  auto A = a ? mx::astype(*a, mx::float32) : mx::negative(mx::exp(mx::astype(*a_log, mx::float32)));
  auto g = mx::multiply(A, softplus);
  auto decay = mx::transpose(mx::exp(g), {0, 2, 1});  // [B, Hv, T]
  std::optional<mx::array> state = rc ? rc->state(1) : std::nullopt;
  if (state && state->shape() != mx::Shape{B, Hv, Dk, Dv}) fail("cache", "the delta rule's state does not match");
  auto S = state ? mx::astype(*state, mx::float32) : mx::zeros({B, Hv, Dk, Dv}, mx::float32);
  // transformers' torch_recurrent_gated_delta_rule, one position at a time (its chunked form for prefill computes the
  // same recurrence, summed in another order).
  std::vector<mx::array> outs;
  outs.reserve(T);
  auto at = [&](const mx::array& y, int t) { return mx::slice(y, {0, 0, t, 0}, {B, Hv, t + 1, y.shape(3)}); };
  auto scalar_at = [&](const mx::array& y, int t) {
    return mx::reshape(mx::slice(y, {0, 0, t}, {B, Hv, t + 1}), {B, Hv, 1, 1});
  };
  for (int t = 0; t < T; ++t) {
    auto qt = at(q, t), kt = at(k, t), vt = at(v, t);  // [B, Hv, 1, D]
    auto decayed = mx::multiply(S, scalar_at(decay, t));
    auto remembered = mx::matmul(kt, decayed);  // k^T S: [B, Hv, 1, Dv]
    auto delta = mx::multiply(mx::subtract(vt, remembered), scalar_at(beta, t));
    auto next = mx::add(decayed, mx::matmul(mx::swapaxes(kt, 2, 3), delta));
    if (tokens) {
      auto m = mx::reshape(mx::slice(*tokens, {0, t}, {B, t + 1}), {B, 1, 1, 1});
      next = mx::where(m, next, S);
    }
    S = next;
    outs.push_back(mx::matmul(qt, S));  // [B, Hv, 1, Dv]
  }
  if (rc) {
    rc->set_state(0, mx::slice(full, {0, T, 0}, {B, T + K - 1, C}));
    rc->set_state(1, S);
    rc->advance(T);
  }
  auto o = T == 1 ? outs[0] : mx::concatenate(outs, 2);
  o = mx::astype(mx::transpose(o, {0, 2, 1, 3}), x.dtype());  // [B, T, Hv, Dv]
  // Qwen3NextRMSNormGated: normed in float32, times the weight in the input's dtype, times silu(z) in float32.
  auto of = mx::astype(o, mx::float32);
  auto normed = mx::multiply(of, mx::rsqrt(mx::add(mx::mean(mx::square(of), -1, true), mx::array(eps))));
  auto scaled = mx::multiply(mx::astype(norm_weight, x.dtype()), mx::astype(normed, x.dtype()));
  auto zf = mx::astype(*z, mx::float32);
  auto gated = mx::multiply(mx::astype(scaled, mx::float32), mx::multiply(zf, mx::sigmoid(zf)));
  return out_proj(mx::reshape(mx::astype(gated, x.dtype()), {B, T, Hv * Dv}));
}

}  // namespace mlxgp::layers
