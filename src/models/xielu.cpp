// layers::Xielu: Apertus's xIELU activation, as transformers' XIELUActivation._xielu_python computes it.
#include "mlxgp/error.h"
#include "models/layers.h"

namespace mlxgp::layers {

namespace {

// A learned scalar stored [1] (transformers) or [] (mlx-lm's sanitize squeezes alpha_p / alpha_n); `fallback` when
// it is absent and has a default (the buffers beta / eps: XIELUActivation's 0.5 / -1e-6).
mx::array scalar(const WeightMap& w, const std::string& name, std::optional<float> fallback) {
  auto it = w.find(name);
  if (it == w.end()) {
    if (!fallback) fail("model", "missing tensor '" + name + "'");
    return mx::array(*fallback);
  }
  if (it->second.size() != 1 || !mx::issubdtype(it->second.dtype(), mx::floating))
    fail("model", "tensor '" + name + "' must be one floating-point value, got shape " + shape_str(it->second.shape()));
  UsedNames::record(name);
  return mx::reshape(it->second, {});
}

mx::array softplus(const mx::array& x) { return mx::logaddexp(x, mx::zeros_like(x)); }

}  // namespace

Xielu Xielu::load(const WeightMap& w, const std::string& prefix) {
  Xielu a;
  a.alpha_p = scalar(w, prefix + ".alpha_p", std::nullopt);
  a.alpha_n = scalar(w, prefix + ".alpha_n", std::nullopt);
  a.beta = scalar(w, prefix + ".beta", 0.5f);
  a.eps = scalar(w, prefix + ".eps", -1e-6f);
  return a;
}

mx::array Xielu::operator()(const mx::array& x) const {
  const auto t = x.dtype();
  auto beta = mx::astype(*this->beta, t);
  auto ap = mx::astype(softplus(*alpha_p), t);
  auto an = mx::add(beta, mx::astype(softplus(*alpha_n), t));
  auto bx = mx::multiply(beta, x);
  auto positive = mx::add(mx::multiply(ap, mx::multiply(x, x)), bx);
  auto negative = mx::add(mx::multiply(mx::subtract(mx::expm1(mx::minimum(x, mx::astype(*eps, t))), x), an), bx);
  return mx::where(mx::greater(x, mx::array(0.0f, t)), positive, negative);
}

}  // namespace mlxgp::layers
