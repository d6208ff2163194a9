// The BatchEngine's speculative lane: speculative and prompt-lookup requests, each verified by its own
// target forwards (k + 1 positions a round), so they cannot share the batch's one-token forward. Each
// step of the engine runs one round of every running one beside the batched rows, so they neither
// wait for the batch nor stall it.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "mlxgp/batch_engine.h"

namespace mlxgp {

namespace speculative {
class SpeculativeRun;
}

class SpeculativeLane {
 public:
  SpeculativeLane(Model& model, std::shared_ptr<const Tokenizer> tokenizer);
  ~SpeculativeLane();
  // Queues a request (config resolved and validated; `draft` resolved: null for prompt lookup).
  void add(int id, std::vector<int> prompt, GenerationConfig config, GeneratorOptions options,
           RowTokenCallback on_token, std::shared_ptr<Model> draft);
  // Starts up to `free_rows` waiting requests (one row each; one at least when nothing runs: `alone`),
  // prefilling each, then runs one round of every running request. Returns the requests that ended.
  std::vector<std::pair<int, GenerationResult>> step(int free_rows, bool alone);
  // Ends a request (FinishReason::Cancelled, the tokens so far); nullopt for ids it does not hold.
  std::optional<GenerationResult> cancel(int id);
  int rows() const { return static_cast<int>(running_.size()); }
  bool empty() const { return running_.empty() && waiting_.empty(); }

 private:
  struct Run;
  Model& model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::deque<std::unique_ptr<Run>> waiting_;
  std::vector<std::unique_ptr<Run>> running_;
};

}  // namespace mlxgp
