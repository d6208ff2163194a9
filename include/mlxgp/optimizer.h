// Optimizers over named parameters (torch.optim semantics), gradient clipping, and learning-rate
// schedules. Parameters and optimizer state are float32 WeightMaps keyed like the model's parameters.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <mlx/array.h>

#include "mlxgp/model.h"

namespace mlxgp {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of every parameter that has a gradient, at learning rate `lr`. Lazy (no eval).
  virtual void step(WeightMap& params, const WeightMap& grads, double lr) = 0;
  int steps() const { return steps_; }
  // Everything needed to resume exactly: moment buffers by "<param>.<slot>", plus the step count.
  virtual WeightMap state() const = 0;
  virtual void load_state(const WeightMap& state, int steps) = 0;
  virtual std::string name() const = 0;
  // The optimizer as it is before an update, for the Trainer to undo one that made weights non-finite.
  // The default keeps state() and steps() and restores them with load_state(); an optimizer whose state
  // cannot be loaded back that way (an mlx.optimizers one behind the Python binding) overrides both.
  struct Snapshot {
    virtual ~Snapshot() = default;
  };
  virtual std::unique_ptr<Snapshot> snapshot() const;
  virtual void restore(const Snapshot& snapshot);

 protected:
  int steps_ = 0;
};

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;  // torch.optim.AdamW defaults
};
// torch.optim.AdamW: p -= lr * wd * p; m, v moments; p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
std::unique_ptr<Optimizer> make_adamw(AdamWOptions options = {});

struct SgdOptions {
  double momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
};
// torch.optim.SGD.
std::unique_ptr<Optimizer> make_sgd(SgdOptions options = {});

// The gradients' total 2-norm (float32 scalar; 0 for none).
mlx::core::array grad_norm(const WeightMap& grads);

// torch.nn.utils.clip_grad_norm_: scales every gradient by min(1, max_norm / (total_norm + 1e-6)).
// Returns the total L2 norm before clipping (lazy scalar).
mlx::core::array clip_grad_norm(WeightMap& grads, double max_norm);

// Learning rate at a step (0-based): constant, or linear warm-up then cosine / linear decay to 0 at
// total_steps (transformers get_cosine_schedule_with_warmup / get_linear_schedule_with_warmup).
struct LrSchedule {
  enum class Kind { Constant, Cosine, Linear };
  Kind kind = Kind::Constant;
  double lr = 1e-4;
  int warmup_steps = 0;
  int total_steps = 0;
  double at(int step) const;
};
// "constant" | "cosine" | "linear"; throws [train] otherwise.
LrSchedule::Kind parse_lr_schedule(const std::string& text);

}  // namespace mlxgp
