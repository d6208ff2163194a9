// ActivationCaptureHook, batch capture, and steering-vector extraction (contrastive activation
// addition: mean activation difference between a positive and a negative prompt set).
#include <algorithm>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/steering.h"

namespace mx = mlx::core;

namespace mlxgp {

ActivationCaptureHook::ActivationCaptureHook(std::vector<int> layers, Reduce reduce)
    : layers_(std::move(layers)), reduce_(reduce) {
  if (layers_.empty()) fail("hooks", "activation capture needs at least one layer");
}

bool ActivationCaptureHook::wants(HookPoint point, int layer) const {
  return point == HookPoint::Residual && std::find(layers_.begin(), layers_.end(), layer) != layers_.end();
}

mx::array ActivationCaptureHook::apply(const HookSite& site, const mx::array& x, Model&) {
  const int T = x.shape(1);
  mx::array kept = x;
  if (reduce_ == Reduce::Last) kept = mx::squeeze(mx::slice(x, {0, T - 1, 0}, x.shape()), 1);
  if (reduce_ == Reduce::Mean) kept = mx::mean(mx::astype(x, mx::float32), 1);
  captured_[site.layer].push_back(kept);
  return x;
}

const std::vector<mx::array>& ActivationCaptureHook::captured(int layer) const {
  auto it = captured_.find(layer);
  if (it == captured_.end()) {
    if (std::find(layers_.begin(), layers_.end(), layer) == layers_.end())
      fail("hooks", "layer " + std::to_string(layer) + " is not captured");
    static const std::vector<mx::array> kNone;
    return kNone;
  }
  return it->second;
}

mx::array capture_activations(Model& model, const std::vector<std::vector<int>>& prompts, int layer,
                              ActivationCaptureHook::Reduce reduce) {
  if (prompts.empty()) fail("hooks", "no prompts to capture activations from");
  if (const int n = model.config().num_hidden_layers; layer < 0 || layer >= n)
    fail("steer",
         "layer " + std::to_string(layer) + " is out of range (the model has layers 0-" + std::to_string(n - 1) + ")");
  if (reduce == ActivationCaptureHook::Reduce::All)
    fail("hooks", "capture_activations reduces each prompt to one vector: use last or mean");
  auto hook = std::make_shared<ActivationCaptureHook>(std::vector<int>{layer}, reduce);
  struct Detach {  // remove the hook even when a forward throws
    Model& m;
    int handle;
    ~Detach() { m.hooks().remove(handle); }
  };
  Detach guard{model, add_hook(model, hook)};
  const int vocab = model.config().vocab_size;
  std::vector<mx::array> rows;
  for (auto& ids : prompts) {
    if (ids.empty()) fail("hooks", "cannot capture activations of an empty prompt");
    for (int id : ids)
      if (id < 0 || id >= vocab) fail("hooks", "token id " + std::to_string(id) + " is outside the vocabulary");
    hook->clear();
    auto caches = model.make_caches();
    mx::array tokens(ids.data(), {1, static_cast<int>(ids.size())}, mx::int32);
    model.forward_last(tokens, caches, 1);  // only the captured activations are evaluated
    auto& got = hook->captured(layer);
    if (got.size() != 1) fail("hooks", "expected one captured activation per prompt");
    rows.push_back(mx::astype(got[0], mx::float32));
    mx::eval(rows.back());
  }
  return mx::concatenate(rows, 0);
}

mx::array extract_steering_vector(Model& model, const std::vector<std::vector<int>>& positive,
                                  const std::vector<std::vector<int>>& negative, int layer,
                                  ActivationCaptureHook::Reduce reduce) {
  if (positive.empty() || negative.empty()) fail("steer", "both prompt sets need at least one prompt");
  auto pos = capture_activations(model, positive, layer, reduce);
  auto neg = capture_activations(model, negative, layer, reduce);
  auto v = mx::subtract(mx::mean(pos, 0), mx::mean(neg, 0));
  mx::eval(v);
  return v;
}

}  // namespace mlxgp
