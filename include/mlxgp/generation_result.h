// What a generation returns: the sequences with their texts, finish reasons and requested outputs, and
// the run's statistics; and the token callback that streams them.
#pragma once

#include <optional>

#include "mlxgp/error.h"

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/stopping.h"

namespace mlxgp {

// MLX memory at a given number of generated tokens (mlx::core::get_peak_memory / get_active_memory).
struct MemorySample {
  int tokens = 0;
  size_t peak_bytes = 0;
  size_t active_bytes = 0;
};

struct GeneratedSequence {
  std::vector<int> token_ids;  // generated tokens only (a final EOS token included, as in HF)
  // Decode of token_ids, less a final special EOS token (as mlx-lm prints it). A stop string stays in,
  // with whatever the last token holds after it (HF returns that token too).
  std::string text;
  FinishReason finish_reason = FinishReason::None;
  // Only when the config asks (output_scores / output_logits / output_logprobs); see Generator::scores().
  // Beam search: step t's row of the beam the token was chosen from (beam_indices[t], as transformers
  // compute_transition_scores(sequences, scores, beam_indices) reads it; group beams, whose indices are
  // group-relative: that group's row), where the processed scores are
  // log_softmax(logits) then the processors, before the running beam score is added (constrained beams:
  // after, as transformers 4.56 records them). logprobs = log_softmax of that row at the chosen token.
  std::optional<mlx::core::array> scores;  // [n, V] processed scores
  std::optional<mlx::core::array> logits;  // [n, V] raw logits
  std::vector<float> token_scores;         // output_scores: each chosen token's processed score
  std::vector<float> token_logits;         // output_logits: each chosen token's raw logit
  std::vector<float> logprobs;             // output_logprobs: each chosen token's log-probability
  // Beam search only (HF sequences_scores / beam_indices): the hypothesis score
  // (sum of log-probs / length^length_penalty) and, per generated token, the beam it came from.
  std::optional<float> sequence_score;
  std::vector<int> beam_indices;
};

// One generated token's log-probability and the step's most likely tokens (BatchRequest::top_logprobs):
// log_softmax of the processed scores the token was chosen from (after the logits processors and the
// sampling warpers, temperature included; what output_logprobs records).
struct TokenLogprobs {
  float logprob = 0;
  std::vector<std::pair<int, float>> top;  // (token, log-probability), most likely first
};

// Speculative and prompt-lookup decoding statistics.
struct SpeculativeStats {
  int drafted_tokens = 0;   // candidate tokens proposed (draft model or prompt lookup)
  int accepted_tokens = 0;  // candidates the target accepted
  int target_forwards = 0;  // verification forwards of the target model (prefill excluded)
  int emitted_tokens = 0;   // tokens produced by those forwards (accepted + one per forward, budget permitting)
  double acceptance_rate() const { return drafted_tokens ? double(accepted_tokens) / drafted_tokens : 0.0; }
  double tokens_per_target_forward() const { return target_forwards ? double(emitted_tokens) / target_forwards : 0.0; }
};

struct GenerationStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;                     // over all sequences
  double prefill_tokens_per_s = 0;              // prompt tokens / time to the first token
  double decode_tokens_per_s = 0;               // tokens after each sequence's first / time after the first step
  size_t peak_memory_bytes = 0;                 // mlx::core::get_peak_memory() over the run
  std::vector<MemorySample> memory_trace;       // GeneratorOptions::memory_trace_at's samples
  std::optional<SpeculativeStats> speculative;  // use_speculative / prompt_lookup_num_tokens only
};

struct GenerationResult {
  std::vector<int> prompt_token_ids;
  std::vector<GeneratedSequence> sequences;
  GenerationStats stats;
  // Set when the generation failed after it started (a BatchEngine request whose own step went wrong, e.g.
  // a constraint that no allowed token satisfies): the sequences hold the tokens before the failure, and the
  // faces report this error, not the sequences. The other requests of the batch go on.
  std::optional<Error> error;
};

// Called with each token and the text it completes (complete UTF-8 only; may be empty). With several
// sequences it streams the first one only (use Generator::step_batch() to follow every row).
using TokenCallback = std::function<void(int token, const std::string& text)>;

}  // namespace mlxgp
