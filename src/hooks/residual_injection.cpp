// ResidualInjectionHook: x + alpha * v at chosen layers and positions (activation steering).
#include <algorithm>
#include <string>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/steering.h"

namespace mx = mlx::core;

namespace mlxgp {

ResidualInjectionHook::ResidualInjectionHook(std::vector<int> layers, VectorSource vector, double alpha,
                                             HookPositions positions)
    : layers_(std::move(layers)), vector_(std::move(vector)), alpha_(alpha), positions_(positions) {
  if (layers_.empty()) fail("hooks", "a residual injection needs at least one layer");
  // A layer named twice would be steered once (wants() tests membership), where two forward hooks on one
  // layer add the vector twice: refused rather than either.
  for (size_t i = 0; i < layers_.size(); ++i)
    if (std::find(layers_.begin(), layers_.begin() + i, layers_[i]) != layers_.begin() + i)
      fail("hooks", "layer " + std::to_string(layers_[i]) + " is listed twice (use one entry and a larger alpha)");
  if (!std::isfinite(alpha_)) fail("hooks", "the injection alpha must be a finite number");
}

bool ResidualInjectionHook::wants(HookPoint point, int layer) const {
  return point == HookPoint::Residual && std::find(layers_.begin(), layers_.end(), layer) != layers_.end();
}

bool ResidualInjectionHook::alters_prompt_states(int num_layers) const {
  return positions_ != HookPositions::Generated && Hook::alters_prompt_states(num_layers);
}

mx::array ResidualInjectionHook::apply(const HookSite& site, const mx::array& x, Model& model) {
  const int T = x.shape(1);
  // Rows [0, split) are prompt positions, [split, T) generated ones.
  int split = T;
  if (site.prompt_length >= 0) split = std::clamp(site.prompt_length - site.offset, 0, T);
  int begin = 0, end = T;
  if (positions_ == HookPositions::Prompt) end = split;
  if (positions_ == HookPositions::Generated) begin = split;
  if (begin >= end) return x;
  // alpha * v in the activation dtype, computed once per vector (decode then adds one array per layer).
  auto v = vector_.resolve(model);
  if (!source_ || source_->id() != v.id() || delta_->dtype() != x.dtype()) {
    delta_ = mx::astype(mx::multiply(v, mx::array(static_cast<float>(alpha_))), x.dtype());
    source_ = v;
  }
  const auto& delta = *delta_;
  if (begin == 0 && end == T) return mx::add(x, delta);
  // A [1, T, 1] mask selects the rows (only prefill chunks that straddle the split get here).
  auto pos = mx::arange(T, mx::int32);
  auto mask = mx::logical_and(mx::greater_equal(pos, mx::array(begin)), mx::less(pos, mx::array(end)));
  mask = mx::astype(mx::reshape(mask, {1, T, 1}), x.dtype());
  return mx::add(x, mx::multiply(mask, delta));
}

}  // namespace mlxgp
