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

// Submits `request` to the engine, speculatively when it may (ParsedRequest::may_speculate) and the engine
// is quiet enough. A request that did not ask for speculation is never refused because of it: settings the
// speculative lane refuses (a rotating cache that may wrap before the end, ...) send it to the batch as
// asked. Rank 0 and the other ranks of a tensor-parallel server call it at the same point of the same
// schedule, so they decide alike. Returns the engine's id; throws what the engine refuses.
int submit_maybe_speculating(BatchEngine& engine, BatchRequest request, bool may_speculate,
                             const SpeculationPolicy& policy);

}  // namespace mlxgp::server
