#include "server/speculation.h"

namespace mlxgp::server {

void maybe_speculate(BatchRequest& request, const BatchEngine& engine, const SpeculationPolicy& policy) {
  if (policy.draft_model.empty() || engine.running_rows() + engine.queued() >= policy.max_busy_rows) return;
  request.config.use_speculative = true;
  request.config.draft_model = policy.draft_model;  // the engine's loaded draft (BatchEngineOptions::draft)
}

}  // namespace mlxgp::server
