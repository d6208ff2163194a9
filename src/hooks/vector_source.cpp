// VectorSource, option parsing, and add_hook's checks against the model.
#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/steering.h"

namespace mx = mlx::core;

namespace mlxgp {

mx::array VectorSource::resolve(Model& model) const {
  mx::array v = vector_ ? *vector_ : model.extra_params().get(key_);
  const int hidden = model.config().hidden_size;
  if (v.size() != static_cast<size_t>(hidden) || (v.ndim() != 1 && !(v.ndim() == 2 && v.shape(0) == 1)))
    fail("hooks", describe() + " must have shape [" + std::to_string(hidden) + "] (the hidden size), got " +
                      std::to_string(v.size()) + " values in " + std::to_string(v.ndim()) + " dimensions");
  if (!mx::issubdtype(v.dtype(), mx::floating)) fail("hooks", describe() + " must be a floating-point array");
  // The stored array itself when already [hidden], so callers can cache on its id().
  return v.ndim() == 1 ? v : mx::reshape(v, {hidden});
}

std::string VectorSource::describe() const {
  return vector_ ? std::string("the steering vector") : "extra parameter '" + key_ + "'";
}

HookPositions parse_hook_positions(const std::string& text) {
  if (text == "all") return HookPositions::All;
  if (text == "prompt") return HookPositions::Prompt;
  if (text == "generated") return HookPositions::Generated;
  fail("hooks", "positions must be all, prompt or generated, got '" + text + "'");
}

ActivationCaptureHook::Reduce parse_capture_reduce(const std::string& text) {
  if (text == "last") return ActivationCaptureHook::Reduce::Last;
  if (text == "mean") return ActivationCaptureHook::Reduce::Mean;
  if (text == "all") return ActivationCaptureHook::Reduce::All;
  fail("hooks", "position must be last, mean or all, got '" + text + "'");
}

namespace {

void check_layers(const std::vector<int>& layers, const Model& model) {
  const int n = model.config().num_hidden_layers;
  if (layers.empty()) fail("hooks", "a layer hook needs at least one layer");
  for (int l : layers)
    if (l < 0 || l >= n)
      fail("hooks",
           "layer " + std::to_string(l) + " is out of range (the model has layers 0-" + std::to_string(n - 1) + ")");
}

}  // namespace

int add_hook(Model& model, std::shared_ptr<Hook> hook) {
  if (!hook) fail("hooks", "cannot add a null hook");
  if (auto* h = dynamic_cast<ResidualInjectionHook*>(hook.get())) check_layers(h->layers(), model);
  if (auto* h = dynamic_cast<SoftPromptHook*>(hook.get())) {
    if (model.extra_params().has(h->param_key())) {
      auto p = model.extra_params().get(h->param_key());
      if (p.ndim() != 2 || p.shape(0) != h->n_virtual() || p.shape(1) != model.config().hidden_size)
        fail("hooks", "soft prompt '" + h->param_key() + "' must have shape [" + std::to_string(h->n_virtual()) + ", " +
                          std::to_string(model.config().hidden_size) + "]");
    }
  }
  return model.hooks().add(std::move(hook));
}

}  // namespace mlxgp
