// Shared machinery of the beam search family: one prefill tiled to the beams, one forward of
// [num_beams, 1] per step, cache reordering with one select, per-candidate stopping checks, and the
// result assembly (hypotheses best first with their scores and beam indices).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/cache_options.h"
#include "mlxgp/generate.h"

namespace mlxgp::beam {

namespace mx = mlx::core;

// One finished (or returned) hypothesis.
struct Hypothesis {
  std::vector<int> tokens;        // generated tokens
  std::vector<int> beam_indices;  // per generated token, the beam it was drawn from
  float score = 0;                // sum of log-probs / length^length_penalty
  FinishReason reason = FinishReason::None;
  // Per generated token, the row of the step outputs it was chosen from, when that is not beam_indices
  // (group beams record group-relative beam indices, as transformers 4.56 does).
  std::vector<int> rows;
};

// A beam still running.
struct Beam {
  std::vector<int> tokens;
  std::vector<int> beam_indices;
  float score = 0;  // sum of processed log-probs so far
};

class BeamRunner {
 public:
  // `config` must be resolved (with_model_defaults) and validated.
  BeamRunner(Model& model, std::shared_ptr<const Tokenizer> tokenizer, const GenerationConfig& config,
             const GeneratorOptions& options);
  // Checks the prompt, prefills it once and tiles the caches to `rows` rows; returns the logits of
  // the prompt's last position repeated to [rows, V] (float32, lazy).
  mx::array prefill(const std::vector<int>& prompt_ids, int rows);
  // Forward of one token per row ([rows, 1]) -> logits [rows, V] float32 (lazy).
  mx::array forward(const std::vector<int>& tokens);
  // A driver that batches several searches (BeamBatch) takes the prefilled caches, and
  // marks when decoding starts (forward() does it otherwise) for the prefill statistics.
  KVCacheList take_caches() { return std::move(caches_); }
  // The next step's logits, checked for values no search can rank (logits_guard.h; one host sync):
  // throws [generate] naming the step unless remove_invalid_values. prefill() and forward() call it.
  mx::array checked(const mx::array& logits);
  void mark_decoding();
  // Keeps cache rows `rows` in this order (HF _reorder_cache / Cache.reorder_cache).
  void reorder(const std::vector<int>& rows);
  // Whether a sequence (prompt + generated `tokens`) hits a stopping criterion (EOS, stop string,
  // callback, token budget, max_time), and which.
  FinishReason check(const std::vector<int>& tokens);
  FinishReason check(const std::vector<int>& tokens, int extra_token);
  // All ids (prompt + tokens) of the given rows as an int32 [rows, T] array (processors' input_ids).
  mx::array ids(const std::vector<const std::vector<int>*>& rows) const;
  // Tokens this generation may produce at most (max_new_tokens / max_length / the context).
  int budget() const { return stop_.budget; }
  const std::vector<int>& prompt() const { return prompt_; }
  const std::vector<int>& eos() const { return stop_.eos; }
  // Per-step outputs (output_scores / output_logits / output_logprobs): one step's raw logits and the
  // scores transformers records for it, [rows, V] each, kept lazy (evaluated with the step's candidates).
  bool records_scores() const { return config_.output_scores || config_.output_logprobs; }
  void record(const mx::array& logits, const std::optional<mx::array>& scores);
  // Builds the result from hypotheses already sorted best first; each one's per-step outputs are the
  // rows it was chosen from (transformers compute_transition_scores(sequences, scores, beam_indices)).
  GenerationResult result(const std::vector<Hypothesis>& hyps) const;

 private:
  Model& model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  GeneratorOptions options_;
  int checked_steps_ = 0;
  StoppingCriteria stop_;
  KVCacheList caches_;
  std::vector<int> prompt_;
  std::vector<int> scratch_;
  GenerationConfig config_;  // the budget's max_new_tokens / max_length
  CacheOptions cache_options_;
  int rows_ = 0;
  std::vector<mx::array> step_logits_, step_scores_;
  std::chrono::steady_clock::time_point start_;
  double prefill_seconds_ = 0;
};

// The best k continuations over all rows of accumulated scores [R, V], best first: value, source
// row and token. With `key`, k continuations are drawn without replacement with probabilities
// softmax(scores) (Gumbel top-k: the law of torch.multinomial(..., replacement=False)), then sorted
// by their scores, as HF beam sampling does. One host sync.
struct Candidates {
  std::vector<float> values;
  std::vector<int> rows, tokens;
};
Candidates top_candidates(const mx::array& scores, int k, const std::optional<mx::array>& key = std::nullopt);

// Sorts candidate positions by value, largest first, lower index first on ties (torch.topk order on
// distinct values; ties are resolved the same way everywhere in this module).
std::vector<int> order_desc(const std::vector<float>& values);

}  // namespace mlxgp::beam
