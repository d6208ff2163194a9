// The per-step outputs a config asks for (transformers' output_scores / output_logits, and
// output_logprobs: compute_transition_scores(normalize_logits=True)), kept lazily as the steps run and
// cut per row at the end.
#pragma once

#include <optional>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/generation_config.h"
#include "mlxgp/generation_result.h"

namespace mlxgp {

namespace mx = mlx::core;

class StepRecorder {
 public:
  explicit StepRecorder(const GenerationConfig& config)
      : logits_(config.output_logits), scores_(config.output_scores), logprobs_(config.output_logprobs) {}
  bool any() const { return logits_ || scores_ || logprobs_ || top_k_ >= 0; }
  // Also keeps each step's chosen-token log-probability and its k most likely tokens (k >= 0).
  void keep_top(int k) { top_k_ = k; }
  // Step `step`'s chosen log-probability and top tokens for `row`, once that step's outputs (last())
  // are evaluated. Needs keep_top().
  TokenLogprobs top(int step, int row) const;
  // One step of R rows: raw logits and processed scores [R, V], chosen tokens [R].
  void record(const mx::array& raw, const mx::array& scores, const mx::array& tokens);
  // The last step's arrays, to evaluate with its tokens (no extra host sync).
  std::vector<mx::array> last() const;
  // Keeps only the first n steps (a step queued ahead that nobody reads).
  void truncate(int n);
  // Row `row` of the first n steps: [n, V] (logits, scores) or [n] (logprobs); nullopt when not asked.
  std::optional<mx::array> logits(int row, int n) const { return cut(logit_steps_, row, n); }
  std::optional<mx::array> scores(int row, int n) const { return cut(score_steps_, row, n); }
  std::vector<float> logprobs(int row, int n) const;
  // A sequence's requested outputs from `row`, for its token_ids: the [n, V] arrays, each chosen
  // token's entry in them, and the log-probabilities.
  void fill(GeneratedSequence& seq, int row) const;

 private:
  static std::optional<mx::array> cut(const std::vector<mx::array>& steps, int row, int n);
  bool logits_, scores_, logprobs_;
  int top_k_ = -1;
  std::vector<mx::array> logit_steps_, score_steps_, logprob_steps_;
  std::vector<mx::array> chosen_steps_, top_id_steps_, top_value_steps_;  // keep_top: [R], [R, k], [R, k]
};

// Each generated token's entry of a [n, V] per-step array (token_scores / token_logits).
std::vector<float> chosen_entries(const mx::array& steps, const std::vector<int>& tokens);

}  // namespace mlxgp
