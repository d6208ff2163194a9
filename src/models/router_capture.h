// Collects each routed MoE layer's router logits during a forward, as transformers'
// output_router_logits does, so the training loss can add the load-balancing term.
#pragma once

#include <vector>

#include <mlx/array.h>

namespace mlxgp::layers {

// Active from construction to destruction on the constructing thread (the forward is built there);
// SparseMoe records into the innermost active capture, in layer order. Dense layers record nothing.
class RouterLogitsCapture {
 public:
  RouterLogitsCapture();
  ~RouterLogitsCapture();
  RouterLogitsCapture(const RouterLogitsCapture&) = delete;
  RouterLogitsCapture& operator=(const RouterLogitsCapture&) = delete;
  const std::vector<mlx::core::array>& logits() const { return logits_; }
  // logits [..., experts]; a no-op when no capture is active.
  static void record(const mlx::core::array& logits);

 private:
  std::vector<mlx::core::array> logits_;
  RouterLogitsCapture* previous_;
};

}  // namespace mlxgp::layers
