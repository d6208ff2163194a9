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
#include "generation/core/sampler.h"

namespace mlxgp::beam {

namespace {

constexpr float kNeg = -1.0e9f;  // HF's sentinel for "cannot be chosen"

// torch: a float32 tensor divided by a Python float (the scalar is cast to float32 first).
float length_normalized(float sum, int length, double length_penalty) {
  return sum / static_cast<float>(std::pow(static_cast<double>(length), length_penalty));
}

}  // namespace

GenerationResult standard_beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                      const std::vector<int>& prompt_ids, const GenerationConfig& config,
                                      const GeneratorOptions& options) {
  const int nb = config.num_beams;
  const int n_eos = config.eos_token_id ? static_cast<int>(config.eos_token_id->size()) : 0;
  const int k = std::max(2, 1 + n_eos) * nb;  // HF beams_to_keep
  const double lp = config.length_penalty;
  const EarlyStopping early = config.early_stopping;

  BeamRunner runner(model, tokenizer, config, options);
  BeamProcessors procs(model, config, options);
  Sampler sampler(config);  // beam sampling: one key per step for the Gumbel top-k

  mx::array logits = runner.prefill(prompt_ids, nb);
  std::vector<Beam> running(nb);
  // HF: only the first beam starts at 0 so the first step does not pick the same token nb times.
  for (int i = 1; i < nb; ++i) running[i].score = kNeg;
  std::vector<Hypothesis> finished(nb);
  for (auto& h : finished) h.score = kNeg;
  std::vector<bool> is_finished(nb, false);
  bool improvable = true;  // HF is_early_stop_heuristic_unsatisfied
  {
    std::vector<const std::vector<int>*> rows;
    for (auto& b : running) rows.push_back(&b.tokens);
    procs.on_prompt(runner.ids(rows));
  }

  for (int t = 0;; ++t) {
    // log_softmax of the raw logits, then the processors, then + the running beam scores.
    auto logprobs = mx::subtract(logits, mx::logsumexp(logits, -1, true));
    mx::array ids = mx::array(0);
    if (procs.needs_ids()) {
      std::vector<const std::vector<int>*> rows;
      for (auto& b : running) rows.push_back(&b.tokens);
      ids = runner.ids(rows);
    }
    auto processed = procs.apply(logprobs, ids);
    // transformers records the raw logits and the processed scores (before the beam scores are added).
    runner.record(logits, processed);
    std::vector<float> beam_scores;
    for (auto& b : running) beam_scores.push_back(b.score);
    auto acc = mx::add(processed, mx::reshape(mx::array(beam_scores.data(), {nb}, mx::float32), {nb, 1}));
    std::optional<mx::array> sub;
    if (sampler.sampling()) sub = sampler.next_key();
    Candidates cand = top_candidates(acc, k, sub);
    const int kk = static_cast<int>(cand.values.size());

    // Which continuations hit a stopping criterion (EOS, stop string, budget, max_time, callback).
    std::vector<FinishReason> reason(kk);
    bool all_hit = true;
    for (int i = 0; i < kk; ++i) {
      reason[i] = runner.check(running[cand.rows[i]].tokens, cand.tokens[i]);
      all_hit = all_hit && reason[i] != FinishReason::None;
    }

    // The best num_beams unfinished continuations run on (HF _get_running_beams_for_next_iteration).
    std::vector<float> run_vals(kk);
    for (int i = 0; i < kk; ++i) run_vals[i] = reason[i] != FinishReason::None ? cand.values[i] + kNeg : cand.values[i];
    std::vector<int> run_order = order_desc(run_vals);
    run_order.resize(nb);

    // Finished hypotheses (HF _update_finished_beams): only the first num_beams candidates may finish;
    // merged with the earlier ones, the best num_beams are kept.
    bool all_finished = true;
    for (bool f : is_finished) all_finished = all_finished && f;
    const bool full = early == EarlyStopping::True && all_finished;
    std::vector<float> merged_scores;
    for (auto& h : finished) merged_scores.push_back(h.score);
    for (int i = 0; i < kk; ++i) {
      const bool just_finished = reason[i] != FinishReason::None && i < nb;
      float s = length_normalized(cand.values[i], t + 1, lp);
      if (full) s += kNeg;
      if (!improvable) s += kNeg;
      if (!just_finished) s += kNeg;
      merged_scores.push_back(s);
    }
    std::vector<int> keep = order_desc(merged_scores);
    keep.resize(nb);
    std::vector<Hypothesis> next_finished;
    std::vector<bool> next_is_finished;
    for (int m : keep) {
      if (m < nb) {
        next_finished.push_back(finished[m]);
        next_is_finished.push_back(is_finished[m]);
        continue;
      }
      const int i = m - nb;
      const Beam& src = running[cand.rows[i]];
      Hypothesis h;
      h.tokens = src.tokens;
      h.tokens.push_back(cand.tokens[i]);
      h.beam_indices = src.beam_indices;
      h.beam_indices.push_back(cand.rows[i]);
      h.score = merged_scores[m];
      h.reason = reason[i];
      next_finished.push_back(std::move(h));
      next_is_finished.push_back(reason[i] != FinishReason::None && i < nb);
    }
    finished = std::move(next_finished);
    is_finished = std::move(next_is_finished);

    std::vector<Beam> next_running;
    std::vector<int> src_rows, new_tokens;
    for (int i : run_order) {
      Beam b;
      b.tokens = running[cand.rows[i]].tokens;
      b.tokens.push_back(cand.tokens[i]);
      b.beam_indices = running[cand.rows[i]].beam_indices;
      b.beam_indices.push_back(cand.rows[i]);
      b.score = run_vals[i];
      src_rows.push_back(cand.rows[i]);
      new_tokens.push_back(cand.tokens[i]);
      next_running.push_back(std::move(b));
    }
    running = std::move(next_running);

    // HF _check_early_stop_heuristic, after the length grew by one.
    const int generated = t + 1;
    const int best_len = (early == EarlyStopping::Never && lp > 0.0) ? runner.budget() : generated;
    const float best_running = length_normalized(running[0].score, best_len, lp);
    float min_finished = finished[0].score;
    for (auto& h : finished) min_finished = std::min(min_finished, h.score);
    bool any_better = false;
    for (int j = 0; j < nb; ++j) any_better = any_better || best_running > (is_finished[j] ? min_finished : kNeg);
    improvable = improvable && any_better;
    all_finished = true;
    for (bool f : is_finished) all_finished = all_finished && f;
    const bool go_on = improvable && !(all_finished && early == EarlyStopping::True) && !all_hit;
    if (!go_on) break;

    runner.reorder(src_rows);
    procs.on_step(new_tokens);
    logits = runner.forward(new_tokens);
  }

  finished.resize(config.num_return_sequences);
  return runner.result(finished);
}

}  // namespace mlxgp::beam
