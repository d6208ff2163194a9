// When `mlxgp serve --draft-model D` decodes a request speculatively without being asked: while the
// server is quiet, as vLLM's speculative_disable_by_batch_size does. A speculative run verifies its own
// candidates with its own target forwards, which pays while a single user waits on every token and costs
// throughput once rows share the batched forward. Greedy requests only: their tokens do not depend on the
// choice (sampling would draw other random numbers), so a request's result never depends on the load.
#pragma once

#include <string>

#include "mlxgp/batch_engine.h"

namespace mlxgp::server {

struct SpeculationPolicy {
  std::string draft_model;  // --draft-model (empty: never)
  int max_busy_rows = 1;    // --speculative-max-rows: rows running or waiting in the engine, at most
};

// Turns `request` (ParsedRequest::may_speculate) into a speculative one when the engine is quiet enough.
// Rank 0 and the other ranks of a tensor-parallel server call it at the same point of the same schedule,
// so they decide alike.
void maybe_speculate(BatchRequest& request, const BatchEngine& engine, const SpeculationPolicy& policy);

}  // namespace mlxgp::server
