#include "generation/core/decode_group.h"

#include <random>
#include <stdexcept>
#include <span>

#include <mlx/memory.h>
#include <mlx/mlx.h>

#include "generation/core/logits_guard.h"
#include "generation/core/setup.h"
#include "generation/prompt_budget.h"
#include "kernels/logits_scan.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

DecodeGroup::DecodeGroup(Model& model, const GenerationConfig& config, const GeneratorOptions& options)
    : config_(config), sampler_(config), recorder_(config) {
  if (auto& neg = options.negative_prompt_ids) {
    if (neg->empty()) fail("generate", "the negative prompt is empty");
    for (int id : *neg)
      if (id < 0 || id >= model.config().vocab_size)
        fail("generate", "negative prompt token id " + std::to_string(id) + " is outside the vocabulary (size " +
                             std::to_string(model.config().vocab_size) + ")");
  }
  ProcessorContext context;
  context.model = &model;
  context.negative_prompt_ids = options.negative_prompt_ids;
  context.logits_processors = options.logits_processors;
  context.prefix_allowed_tokens_fn = options.prefix_allowed_tokens_fn;
  context.tokenizer = options.tokenizer;
  if (config_.xtc_probability > 0) context.rng_seed = sampler_.draw_seed();  // XTC's coins follow the seed
  processors_ = build_logits_processors(config_, context);
  processors_.check_vocabulary(model.config().vocab_size);
  stop_ = stopping_criteria(config_, options);
  // HF expands the prompt to num_return_sequences rows (validate() allows > 1 only when sampling).
  rows_ = config_.num_return_sequences;
  generated_.resize(rows_);
  finish_.assign(rows_, FinishReason::None);
  last_.assign(rows_, -1);
  budget_context_ = model.config();
  added_positions_ = model.hooks().added_positions();
}

void DecodeGroup::start(const std::vector<int>& prompt_ids) {
  if (started_) fail("generate", "this request was already started");
  stop_.budget = check_prompt_and_budget(budget_context_, config_, prompt_ids, added_positions_);
  start_ = std::chrono::steady_clock::now();
  prompt_ = prompt_ids;
  started_ = true;
  active_ = rows_;
  const int n = static_cast<int>(prompt_ids.size());
  mx::array ids(prompt_ids.data(), {1, n}, mx::int32);
  mx::array rows = rows_ == 1 ? ids : mx::repeat(ids, rows_, 0);  // [rows, n]
  processors_.on_prompt(rows);
  if (processors_.needs_ids()) ids_so_far_ = rows;
  if (stop_.needs_ids()) ids_.assign(rows_, prompt_ids);
}

DecodeGroup::Picked DecodeGroup::pick_greedy(const mx::array& logits) {
  mx::array raw = logits.dtype() == mx::float32 ? logits : mx::astype(logits, mx::float32);
  if (kernels::logits_scan_supported(raw)) {
    auto scan = kernels::logits_scan(raw);
    return {scan.argmax, scan.invalid_row};
  }
  return {mx::astype(mx::argmax(raw, -1), mx::int32), invalid_rows(raw)};
}

mx::array DecodeGroup::choose(const mx::array& logits, const std::optional<Picked>& picked) {
  if (picked && !picks_raw_argmax())
    throw std::logic_error("[generate] a shared greedy pick given to a request with processors or sampling");
  mx::array raw = logits.dtype() == mx::float32 ? logits : mx::astype(logits, mx::float32);
  mx::array scores = raw;
  if (!processors_.empty()) scores = processors_.apply(scores, processors_.needs_ids() ? *ids_so_far_ : mx::array(0));
  // Greedy: the argmax in one read of the scores (kernels/logits_scan.h), which without processors are the
  // raw logits, so the same read also answers the guard's test.
  std::optional<kernels::LogitsScan> scan;
  if (!picked && !sampler_.sampling() && kernels::logits_scan_supported(scores)) scan = kernels::logits_scan(scores);
  mx::array token = picked ? picked->tokens
                    : scan ? scan->argmax
                           : sampler_.choose(scores, &scores);  // mirostat records what it sampled from
  if (guards_logits(config_)) {
    // Evaluated with the token (no extra sync), read when the step is accepted.
    auto bad = picked                        ? mx::any(picked->invalid_rows)
               : scan && processors_.empty() ? scan->invalid
                                             : invalid_logits(raw);
    token = mx::depends({token}, {bad})[0];
    logits_checks_.push_back(bad);
  }
  // Sampled scores (as torch.multinomial refuses inf / NaN), and processed greedy ones: a row every
  // processor masked would give argmax's token 0, never a token they allow.
  const bool processed_greedy = scan && !processors_.empty();
  if (!picked && (sampler_.sampling() || processed_greedy)) {
    auto bad = processed_greedy ? scan->invalid : invalid_logits(scores);
    token = mx::depends({token}, {bad})[0];
    score_checks_.push_back(bad);
  }
  recorder_.record(raw, scores, token);
  processors_.on_token(token);
  // One two-input concat per step (not a concat of every step's token): the graph stays small.
  if (processors_.needs_ids()) ids_so_far_ = mx::concatenate({*ids_so_far_, mx::reshape(token, {rows_, 1})}, 1);
  return token;
}

std::vector<mx::array> DecodeGroup::outputs() const { return recorder_.last(); }

const std::vector<int>& DecodeGroup::accept(const int32_t* tokens) {
  const int produced = steps_ + 1;
  if (!logits_checks_.empty()) {
    const bool bad = logits_checks_.front().item<bool>();
    logits_checks_.pop_front();
    if (bad) fail_invalid_logits(produced);
  }
  if (!score_checks_.empty()) {
    const bool bad = score_checks_.front().item<bool>();
    score_checks_.pop_front();
    if (bad) {
      processors_.raise_pending();  // a constraint's own reason first
      fail_invalid_scores(produced);
    }
  }
  auto now = std::chrono::steady_clock::now();
  if (steps_ == 0) {
    first_token_ = now;
    prefill_seconds_ = std::chrono::duration<double>(now - start_).count();
  } else {
    decode_seconds_ = std::chrono::duration<double>(now - first_token_).count();
  }
  steps_ = produced;
  const double elapsed = stop_.max_time ? seconds_since(start_) : 0.0;
  for (int r = 0; r < rows_; ++r) {
    if (finish_[r] != FinishReason::None) {
      last_[r] = -1;
      continue;
    }
    const int token = tokens[r];
    last_[r] = token;
    generated_[r].push_back(token);
    std::span<const int> ids = generated_[r];
    if (!ids_.empty()) {
      ids_[r].push_back(token);
      ids = ids_[r];
    }
    finish_[r] = stop_.check(ids, produced, elapsed);
    if (finish_[r] != FinishReason::None) --active_;
  }
  // A driver that queued one step ahead recorded outputs for a token nobody reads: drop them.
  if (done()) recorder_.truncate(steps_);
  return last_;
}

void DecodeGroup::cancel() {
  for (auto& f : finish_)
    if (f == FinishReason::None) f = FinishReason::Cancelled;
  active_ = 0;
  started_ = true;
  logits_checks_.clear();
  score_checks_.clear();
  recorder_.truncate(steps_);
}

TextStreams::TextStreams(std::shared_ptr<const Tokenizer> tokenizer, int rows)
    : tokenizer_(std::move(tokenizer)), detok_(rows), texts_(rows) {
  if (tokenizer_)
    for (auto& d : detok_) d.emplace(tokenizer_);
}

std::string TextStreams::push(int row, int token, FinishReason reason) {
  auto& d = detok_.at(row);
  if (!d) return {};
  std::string piece;
  // A terminating special EOS token (e.g. <|im_end|>) is kept in token_ids but not shown as text, as
  // mlx-lm prints it; an ordinary token chosen as EOS keeps its text.
  const bool hidden = reason == FinishReason::Eos && tokenizer_->is_special(token);
  if (!hidden) piece = d->push(token);
  if (reason != FinishReason::None) piece += d->flush();
  texts_[row] += piece;
  return piece;
}

GenerationResult assemble_result(const DecodeGroup& group, TextStreams& texts) {
  GenerationResult result;
  result.prompt_token_ids = group.prompt();
  int total = 0;
  const int n = group.rows();
  for (int r = 0; r < n; ++r) {
    GeneratedSequence seq;
    seq.token_ids = group.generated(r);
    seq.text = std::move(texts.text(r));
    seq.finish_reason = group.finish_reason(r);
    group.recorder().fill(seq, r);
    total += static_cast<int>(seq.token_ids.size());
    result.sequences.push_back(std::move(seq));
  }
  auto& s = result.stats;
  s.prompt_tokens = static_cast<int>(group.prompt().size());
  s.generated_tokens = total;
  if (group.prefill_seconds() > 0) s.prefill_tokens_per_s = s.prompt_tokens / group.prefill_seconds();
  // Every sequence's first token comes with the prefill; the rest are decode.
  if (total > n && group.decode_seconds() > 0) s.decode_tokens_per_s = (total - n) / group.decode_seconds();
  s.peak_memory_bytes = mx::get_peak_memory();
  return result;
}

}  // namespace mlxgp
