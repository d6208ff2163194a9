// Beam search and beam sampling with transformers 5.x semantics (GenerationMixin._beam_search, the
// vectorized rewrite): every step keeps the top K = max(2, 1 + len(eos)) * num_beams continuations of
// all beams; those hitting a stopping criterion among the first num_beams become finished hypotheses
// (score = sum of log-probs / generated_length^length_penalty), the best num_beams unfinished ones run
// on. The arithmetic on scores is float32, as in torch, so ties and the -1e9 sentinels behave alike.
#include <cmath>
#include <random>

#include <mlx/mlx.h>
#include <mlx/random.h>

#include "generation/beam/beam_common.h"
#include "generation/beam/beam_processors.h"
#include "generation/beam/searches.h"
#include "generation/beam/search_state.h"
#include "generation/core/sampler.h"

namespace mx = mlx::core;

namespace mlxgp::beam {

namespace {

constexpr float kNeg = -1.0e9f;  // HF's sentinel for "cannot be chosen"

// torch: a float32 tensor divided by a Python float (the scalar is cast to float32 first).
float length_normalized(float sum, int length, double length_penalty) {
  return sum / static_cast<float>(std::pow(static_cast<double>(length), length_penalty));
}

}  // namespace

StandardBeams::StandardBeams(Model& model, std::shared_ptr<const Tokenizer> tokenizer, const GenerationConfig& config,
                             const GeneratorOptions& options)
    : BeamSearchState(model, std::move(tokenizer), config, options),
      config_(config),
      nb_(config.num_beams),
      // HF beams_to_keep
      k_(std::max(2, 1 + (config.eos_token_id ? static_cast<int>(config.eos_token_id->size()) : 0)) * config.num_beams),
      lp_(config.length_penalty),
      early_(config.early_stopping),
      procs_(model, config, options),
      sampler_(config) {}

mx::array StandardBeams::prefill(const std::vector<int>& prompt_ids) {
  mx::array logits = runner_.prefill(prompt_ids, nb_);
  running_.assign(nb_, Beam{});
  // HF: only the first beam starts at 0 so the first step does not pick the same token nb times.
  for (int i = 1; i < nb_; ++i) running_[i].score = kNeg;
  finished_.assign(nb_, Hypothesis{});
  for (auto& h : finished_) h.score = kNeg;
  is_finished_.assign(nb_, false);
  std::vector<const std::vector<int>*> rows;
  for (auto& b : running_) rows.push_back(&b.tokens);
  procs_.on_prompt(runner_.ids(rows));
  return logits;
}

bool StandardBeams::step(const mx::array& logits) {
  // log_softmax of the raw logits, then the processors, then + the running beam scores.
  auto logprobs = mx::subtract(logits, mx::logsumexp(logits, -1, true));
  mx::array ids = mx::array(0);
  if (procs_.needs_ids()) {
    std::vector<const std::vector<int>*> rows;
    for (auto& b : running_) rows.push_back(&b.tokens);
    ids = runner_.ids(rows);
  }
  auto processed = procs_.apply(logprobs, ids);
  // transformers records the raw logits and the processed scores (before the beam scores are added).
  runner_.record(logits, processed);
  std::vector<float> beam_scores;
  for (auto& b : running_) beam_scores.push_back(b.score);
  auto acc = mx::add(processed, mx::reshape(mx::array(beam_scores.data(), {nb_}, mx::float32), {nb_, 1}));
  std::optional<mx::array> sub;
  if (sampler_.sampling()) sub = sampler_.next_key();
  Candidates cand = top_candidates(acc, k_, sub);
  procs_.check_candidates(cand.values.empty() ? NAN : cand.values[0],
                          std::find(is_finished_.begin(), is_finished_.end(), true) != is_finished_.end());
  const int kk = static_cast<int>(cand.values.size());

  // Which continuations hit a stopping criterion (EOS, stop string, budget, max_time, callback).
  std::vector<FinishReason> reason(kk);
  bool all_hit = true;
  for (int i = 0; i < kk; ++i) {
    reason[i] = runner_.check(running_[cand.rows[i]].tokens, cand.tokens[i]);
    all_hit = all_hit && reason[i] != FinishReason::None;
  }

  // The best num_beams unfinished continuations run on (HF _get_running_beams_for_next_iteration).
  std::vector<float> run_vals(kk);
  for (int i = 0; i < kk; ++i) run_vals[i] = reason[i] != FinishReason::None ? cand.values[i] + kNeg : cand.values[i];
  std::vector<int> run_order = order_desc(run_vals);
  run_order.resize(nb_);

  // Finished hypotheses (HF _update_finished_beams): only the first num_beams candidates may finish;
  // merged with the earlier ones, the best num_beams are kept.
  bool all_finished = true;
  for (bool f : is_finished_) all_finished = all_finished && f;
  const bool full = early_ == EarlyStopping::True && all_finished;
  std::vector<float> merged_scores;
  for (auto& h : finished_) merged_scores.push_back(h.score);
  for (int i = 0; i < kk; ++i) {
    const bool just_finished = reason[i] != FinishReason::None && i < nb_;
    float s = length_normalized(cand.values[i], t_ + 1, lp_);
    if (full) s += kNeg;
    if (!improvable_) s += kNeg;
    if (!just_finished) s += kNeg;
    merged_scores.push_back(s);
  }
  std::vector<int> keep = order_desc(merged_scores);
  keep.resize(nb_);
  std::vector<Hypothesis> next_finished;
  std::vector<bool> next_is_finished;
  for (int m : keep) {
    if (m < nb_) {
      next_finished.push_back(finished_[m]);
      next_is_finished.push_back(is_finished_[m]);
      continue;
    }
    const int i = m - nb_;
    const Beam& src = running_[cand.rows[i]];
    Hypothesis h;
    h.tokens = src.tokens;
    h.tokens.push_back(cand.tokens[i]);
    h.beam_indices = src.beam_indices;
    h.beam_indices.push_back(cand.rows[i]);
    h.score = merged_scores[m];
    h.reason = reason[i];
    next_finished.push_back(std::move(h));
    next_is_finished.push_back(reason[i] != FinishReason::None && i < nb_);
  }
  finished_ = std::move(next_finished);
  is_finished_ = std::move(next_is_finished);

  std::vector<Beam> next_running;
  src_rows_.clear();
  new_tokens_.clear();
  for (int i : run_order) {
    Beam b;
    b.tokens = running_[cand.rows[i]].tokens;
    b.tokens.push_back(cand.tokens[i]);
    b.beam_indices = running_[cand.rows[i]].beam_indices;
    b.beam_indices.push_back(cand.rows[i]);
    b.score = run_vals[i];
    src_rows_.push_back(cand.rows[i]);
    new_tokens_.push_back(cand.tokens[i]);
    next_running.push_back(std::move(b));
  }
  running_ = std::move(next_running);

  // HF _check_early_stop_heuristic, after the length grew by one.
  const int generated = ++t_;
  const int best_len = (early_ == EarlyStopping::Never && lp_ > 0.0) ? runner_.budget() : generated;
  const float best_running = length_normalized(running_[0].score, best_len, lp_);
  float min_finished = finished_[0].score;
  for (auto& h : finished_) min_finished = std::min(min_finished, h.score);
  bool any_better = false;
  for (int j = 0; j < nb_; ++j) any_better = any_better || best_running > (is_finished_[j] ? min_finished : kNeg);
  improvable_ = improvable_ && any_better;
  all_finished = true;
  for (bool f : is_finished_) all_finished = all_finished && f;
  const bool go_on = improvable_ && !(all_finished && early_ == EarlyStopping::True) && !all_hit;
  if (!go_on) return false;
  procs_.on_step(new_tokens_);
  return true;
}

GenerationResult StandardBeams::result() {
  finished_.resize(config_.num_return_sequences);
  return runner_.result(finished_);
}

std::unique_ptr<BeamSearchState> make_beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                                  const GenerationConfig& config, const GeneratorOptions& options) {
  if (config.num_beam_groups > 1) return make_group_beams(model, std::move(tokenizer), config, options);
  if (config.force_words_ids) return make_constrained_beams(model, std::move(tokenizer), config, options);
  return std::make_unique<StandardBeams>(model, std::move(tokenizer), config, options);
}

GenerationResult run_beam_search(BeamSearchState& search, const std::vector<int>& prompt_ids) {
  mx::array logits = search.prefill(prompt_ids);
  while (search.step(logits)) {
    search.runner().reorder(search.src_rows());
    logits = search.runner().forward(search.new_tokens());
  }
  return search.result();
}

}  // namespace mlxgp::beam
