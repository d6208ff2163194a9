#include "models/router_capture.h"

namespace mlxgp::layers {

namespace {
thread_local RouterLogitsCapture* active = nullptr;
}

RouterLogitsCapture::RouterLogitsCapture() : previous_(active) { active = this; }

RouterLogitsCapture::~RouterLogitsCapture() { active = previous_; }

void RouterLogitsCapture::record(const mlx::core::array& logits) {
  if (active) active->logits_.push_back(logits);
}

}  // namespace mlxgp::layers
