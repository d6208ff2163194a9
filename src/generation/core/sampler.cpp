#include "generation/core/sampler.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <mlx/mlx.h>
#include <mlx/random.h>

namespace mx = mlx::core;

namespace mlxgp {

namespace {

uint64_t fresh_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

// -log2(p)
mx::array surprise(const mx::array& p) { return mx::negative(mx::log2(p)); }

}  // namespace

Sampler::Sampler(const GenerationConfig& config)
    : sample_(config.do_sample),
      key_(mx::random::key(config.seed ? *config.seed : fresh_seed())),
      mirostat_(config.mirostat),
      tau_(static_cast<float>(config.mirostat_tau)),
      eta_(static_cast<float>(config.mirostat_eta)) {}

mx::array Sampler::next_key() {
  auto [next, sub] = mx::random::split(key_);
  key_ = next;
  return sub;
}

uint32_t Sampler::draw_seed() {
  auto bits = mx::random::bits({1}, 4, next_key());
  return bits.item<uint32_t>();
}

// llama.cpp's llama_sampler_mirostat(_v2)_apply before the draw: the candidates it samples from.
mx::array Sampler::mirostat_truncate(const mx::array& scores) {
  const int rows = scores.shape(0), v = scores.shape(-1);
  if (!mu_) mu_ = mx::full({rows}, 2.0f * tau_, mx::float32);
  auto mu = mx::reshape(*mu_, {rows, 1});
  auto p = mx::softmax(scores, -1, true);
  mx::array keep = mx::array(true);
  if (mirostat_ == 2) {
    // v2: the tokens whose surprise is at most mu (the most likely one when none is).
    keep = mx::less_equal(surprise(p), mu);
  } else {
    // v1: estimate the Zipf exponent s from the m = 100 most likely tokens, then keep the top k with
    // k = (eps * 2^mu / (1 - V^-eps))^(1/s), eps = s - 1.
    const int m = std::min(100, v);
    auto top = mx::sort(mx::topk(p, m, -1), -1);      // ascending: top[m-1] is the most likely
    auto hi = mx::slice(top, {0, 1}, {rows, m});      // p_i     (i = m-2 .. 0, reversed)
    auto lo = mx::slice(top, {0, 0}, {rows, m - 1});  // p_{i+1}
    std::vector<float> t(m - 1);
    for (int j = 0; j < m - 1; ++j) {  // column j holds rank i = m - 2 - j
      const int i = m - 2 - j;
      t[j] = std::log(static_cast<float>(i + 2) / static_cast<float>(i + 1));
    }
    auto ti = mx::array(t.data(), {1, m - 1}, mx::float32);
    auto bi = mx::log(mx::divide(hi, lo));
    auto s_hat = mx::divide(mx::sum(mx::multiply(ti, bi), -1, true), mx::sum(mx::square(ti), -1, true));
    auto eps = mx::subtract(s_hat, mx::array(1.0f));
    auto num = mx::multiply(eps, mx::power(mx::array(2.0f), mu));
    auto den = mx::subtract(mx::array(1.0f), mx::power(mx::array(static_cast<float>(v)), mx::negative(eps)));
    auto k = mx::power(mx::divide(num, den), mx::reciprocal(s_hat));
    k = mx::where(mx::isnan(k), mx::array(1.0f), k);
    k = mx::clip(mx::floor(k), mx::array(1.0f), mx::array(static_cast<float>(v)));
    auto ascending = mx::sort(p, -1);
    auto kth = mx::take_along_axis(ascending, mx::subtract(mx::array(v), mx::astype(k, mx::int32)), -1);
    keep = mx::greater_equal(p, kth);
  }
  auto top = mx::equal(mx::arange(v), mx::expand_dims(mx::argmax(scores, -1), -1));
  return mx::where(mx::logical_or(keep, top), scores, mx::array(-INFINITY));
}

mx::array Sampler::choose(const mx::array& scores, mx::array* sampled_from) {
  if (sample_ && mirostat_ != 0) {
    auto truncated = mirostat_truncate(scores);
    auto t = mx::astype(mx::random::categorical(truncated, -1, next_key()), mx::int32);
    // mu -= eta * (surprise of the chosen token in the truncated distribution - tau)
    auto p = mx::take_along_axis(mx::softmax(truncated, -1, true), mx::expand_dims(t, -1), -1);
    auto err = mx::subtract(mx::reshape(surprise(p), {-1}), mx::array(tau_));
    mu_ = mx::subtract(*mu_, mx::multiply(mx::array(eta_), err));
    if (sampled_from) *sampled_from = truncated;
    return t;
  }
  auto t = sample_ ? mx::random::categorical(scores, -1, next_key()) : mx::argmax(scores, -1);
  return mx::astype(t, mx::int32);
}

}  // namespace mlxgp
