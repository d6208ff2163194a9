// DecodeGroup: the request side of decoding, shared by the one-request Generator and the BatchEngine.
// One group is one request's rows (num_return_sequences rows of one prompt): its logits processors, its
// sampler (argmax, or categorical draws from its own RNG key, so a request samples the same tokens
// whatever batch it runs in), its stopping criteria, the per-step outputs it records and the per-row
// bookkeeping. The model side (caches, forwards) belongs to whoever drives it.
#pragma once

#include <chrono>
#include <deque>
#include <optional>
#include <vector>

#include <mlx/array.h>

#include "generation/core/sampler.h"
#include "generation/core/step_recorder.h"
#include "mlxgp/generate.h"

namespace mx = mlx::core;

namespace mlxgp {

class DecodeGroup {
 public:
  // `config` resolved (with_model_defaults) and validated. Throws [generate] for stop_strings without
  // options.tokenizer or a bad negative prompt.
  DecodeGroup(Model& model, const GenerationConfig& config, const GeneratorOptions& options);

  // Checks the prompt (throws [generate]), sets the token budget and tells the processors. Starts the clock.
  void start(const std::vector<int>& prompt_ids);
  // A greedy pick made for many requests at once (pick_greedy over a batch's logits): this request's rows
  // of the argmax [rows] int32 and of the invalid-row flags [rows] bool.
  struct Picked {
    mx::array tokens, invalid_rows;
  };
  static Picked pick_greedy(const mx::array& logits);
  // Whether choose() takes the argmax of the raw logits (greedy, no processors): then a Picked serves.
  bool picks_raw_argmax() const { return processors_.empty() && !sampler_.sampling(); }
  // Processed logits [rows, V] -> the next tokens [rows] int32 (lazy): processors, sampler, and the
  // outputs the config asks for (scores, logits, logprobs), which outputs() returns for evaluation.
  // `picked` (only where picks_raw_argmax()): the tokens and the guard's test already taken.
  mx::array choose(const mx::array& logits, const std::optional<Picked>& picked = std::nullopt);
  // The recorded outputs of the last choose() (evaluate them with its tokens: no extra sync).
  std::vector<mx::array> outputs() const;
  // Reads one step's tokens (host pointer to rows() int32): appends them to the unfinished rows and
  // checks the stopping criteria. Returns each row's token, -1 for rows finished earlier.
  const std::vector<int>& accept(const int32_t* tokens);
  // Ends every unfinished row with FinishReason::Cancelled.
  void cancel();

  int rows() const { return rows_; }
  bool done() const { return started_ && active_ == 0; }
  int steps() const { return steps_; }
  int budget() const { return stop_.budget; }
  const GenerationConfig& config() const { return config_; }
  const std::vector<int>& prompt() const { return prompt_; }
  const std::vector<int>& generated(int row) const { return generated_.at(row); }
  FinishReason finish_reason(int row) const { return finish_.at(row); }
  std::optional<mx::array> scores(int row) const { return recorder_.scores(row, generated_count(row)); }
  std::optional<mx::array> logits(int row) const { return recorder_.logits(row, generated_count(row)); }
  std::vector<float> logprobs(int row) const { return recorder_.logprobs(row, generated_count(row)); }
  const StepRecorder& recorder() const { return recorder_; }
  // Records each step's chosen-token log-probability and k most likely tokens (before start()).
  void keep_top_logprobs(int k) { recorder_.keep_top(k); }
  // Those of the last token accept() appended to `row`.
  TokenLogprobs last_logprobs(int row) const { return recorder_.top(generated_count(row) - 1, row); }
  double prefill_seconds() const { return prefill_seconds_; }  // start() -> first token read
  double decode_seconds() const { return decode_seconds_; }    // first token -> last token read

 private:
  int generated_count(int row) const { return static_cast<int>(generated_.at(row).size()); }

  GenerationConfig config_;
  LogitsProcessorList processors_;
  StoppingCriteria stop_;
  Sampler sampler_;
  StepRecorder recorder_;
  int rows_ = 1;
  std::optional<mx::array> ids_so_far_;  // [rows, T] prompt + generated (only when processors need it)
  std::vector<int> prompt_;
  std::vector<std::vector<int>> generated_;  // per row
  std::vector<std::vector<int>> ids_;        // per row prompt + generated (stop strings / callback only)
  std::vector<FinishReason> finish_;
  std::vector<int> last_;
  bool started_ = false;
  int active_ = 0;
  int steps_ = 0;
  std::chrono::steady_clock::time_point start_, first_token_;
  double prefill_seconds_ = 0, decode_seconds_ = 0;
  ModelConfig budget_context_;           // vocabulary and context size for the prompt checks
  int added_positions_ = 0;              // a soft prompt's positions before the prompt (prompt_budget.h)
  std::deque<mx::array> logits_checks_;  // invalid_logits() of each chosen step not yet accepted
  std::deque<mx::array> score_checks_;   // when sampling, invalid_logits() of the processed scores, likewise
};

// Streams each row's text as tokens arrive: complete UTF-8 only, and a terminating special EOS token
// (e.g. <|im_end|>) kept in token_ids but not shown, as mlx-lm prints it.
class TextStreams {
 public:
  TextStreams(std::shared_ptr<const Tokenizer> tokenizer, int rows);
  // The text `token` completes in `row`; `reason` is the row's finish reason after this token.
  std::string push(int row, int token, FinishReason reason);
  std::string& text(int row) { return texts_.at(row); }

 private:
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::vector<std::optional<StreamingDetokenizer>> detok_;
  std::vector<std::string> texts_;
};

// The group's sequences (tokens, texts, finish reasons, requested outputs) and its statistics.
GenerationResult assemble_result(const DecodeGroup& group, TextStreams& texts);

}  // namespace mlxgp
