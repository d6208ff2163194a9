#include "server/speculation.h"

#include "mlxgp/error.h"

namespace mlxgp::server {

int submit_maybe_speculating(BatchEngine& engine, BatchRequest request, bool may_speculate,
                             const SpeculationPolicy& policy) {
  if (!may_speculate || policy.draft_model.empty() || engine.running_rows() + engine.queued() >= policy.max_busy_rows)
    return engine.submit(std::move(request));
  BatchRequest speculative = request;
  speculative.config.use_speculative = true;
  speculative.config.draft_model = policy.draft_model;  // the engine's loaded draft (BatchEngineOptions::draft)
  try {
    return engine.submit(std::move(speculative));
  } catch (const Error&) {
    return engine.submit(std::move(request));  // the speculative lane's refusal, not the request's
  }
}

}  // namespace mlxgp::server
