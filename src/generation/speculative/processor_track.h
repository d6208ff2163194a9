// A logits-processor pipeline followed through speculative rounds. Verification needs the processed
// distribution at each of the k+1 positions with the ids extended by the candidates (transformers
// _assisted_decoding applies its LogitsProcessorList position by position the same way), and after a
// rejection the pipeline must continue as if only the accepted tokens had been produced. Stateful
// processors (presence/frequency counts, force_words progress) learn tokens through on_token(), so the
// track snapshots the pipeline after each position and commits the snapshot of the accepted prefix.
#pragma once

#include <vector>

#include <mlx/array.h>

#include "mlxgp/logits_processor.h"

namespace mx = mlx::core;

namespace mlxgp::speculative {

class ProcessorTrack {
 public:
  explicit ProcessorTrack(LogitsProcessorList pipeline) : committed_(std::move(pipeline)) {}

  bool empty() const { return committed_.empty(); }
  bool needs_ids() const { return committed_.needs_ids(); }
  void on_prompt(const mx::array& ids) { committed_.on_prompt(ids); }

  // Starts a round at the committed state.
  void begin();
  // Processes the logits [1, V] of the round's next position; `ids` [1, T] are all tokens before it
  // (committed ones, then the candidates pushed so far). Returns the processed scores [1, V].
  mx::array apply(const mx::array& logits, const mx::array& ids);
  // The candidate token [1] chosen at the current position (the next apply() sees it as produced).
  void push(const mx::array& token);
  // Ends the round: `accepted` candidates were kept, then `final_token` [1] was produced.
  void commit(int accepted, const mx::array& final_token);
  // Throws what a processor's row kernel found while this round's scores were evaluated (a constraint no
  // token satisfies), if anything: the round's kernels ran on the working pipeline.
  void raise_pending() {
    if (!committed_.empty()) work_.raise_pending();
  }

 private:
  LogitsProcessorList committed_;
  LogitsProcessorList work_;
  std::vector<LogitsProcessorList> after_apply_;  // work_ right after the apply() of each position
  int pushed_ = 0;
};

}  // namespace mlxgp::speculative
