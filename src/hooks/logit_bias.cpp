// LogitBiasHook: logits + alpha * lm_head(v).
#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/steering.h"

namespace mx = mlx::core;

namespace mlxgp {

LogitBiasHook::LogitBiasHook(VectorSource vector, double alpha) : vector_(std::move(vector)), alpha_(alpha) {
  if (!std::isfinite(alpha_)) fail("hooks", "the logit-bias alpha must be a finite number");
}

mx::array LogitBiasHook::apply(const HookSite&, const mx::array& x, Model& model) {
  auto v = vector_.resolve(model);
  // The bias depends only on v: compute it once (it is evaluated with the first step's graph and
  // reused afterwards) and again only when the vector changes.
  if (!source_ || source_->id() != v.id()) {
    auto h = mx::reshape(v, {1, 1, model.config().hidden_size});
    // The head runs in the model's dtype; the bias itself stays float32 like the logits.
    auto w = model.lm_head(h);
    bias_ = mx::multiply(mx::reshape(w, {w.shape(-1)}), mx::array(static_cast<float>(alpha_)));
    source_ = v;
  }
  return mx::add(x, *bias_);
}

}  // namespace mlxgp
