// Diverse (group) beam search with transformers 4.56 semantics (_group_beam_search +
// BeamSearchScorer + HammingDiversityLogitsProcessor), the last release that ships it. The beams are
// split into num_beam_groups groups of group_size; each step the groups are processed in order, and a
// group's log-probs lose diversity_penalty per use of a token by the earlier groups at this step.
// Each group keeps its own finished hypotheses (BeamHypotheses of group_size); the returned ones are
// the best over all groups. Per-step scores are 4.56's: each row's processed scores (diversity penalty
// included). Its beam indices are group-relative, which its compute_transition_scores reads as rows of
// group 0; a hypothesis's outputs are gathered here from the rows it was chosen from instead.
#include <algorithm>
#include <cmath>

#include <mlx/mlx.h>

#include "generation/beam/beam_common.h"
#include "generation/beam/beam_processors.h"
#include "generation/beam/hypotheses.h"
#include "generation/beam/searches.h"
#include "mlxgp/error.h"

namespace mlxgp::beam {

GenerationResult group_beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                   const std::vector<int>& prompt_ids, const GenerationConfig& config,
                                   const GeneratorOptions& options) {
  const int nb = config.num_beams, groups = config.num_beam_groups, gs = nb / groups;
  const std::vector<int> eos = config.eos_token_id.value_or(std::vector<int>{});
  const int k = std::max(2, 1 + static_cast<int>(eos.size())) * gs;
  // HF generate() pads finished groups with pad_token_id, which defaults to the first EOS id.
  const int pad = config.pad_token_id ? *config.pad_token_id : (eos.empty() ? 0 : eos[0]);
  const auto is_eos = [&](int t) { return std::find(eos.begin(), eos.end(), t) != eos.end(); };

  BeamRunner runner(model, tokenizer, config, options);
  BeamProcessors procs(model, config, options);
  mx::array logits = runner.prefill(prompt_ids, nb);
  std::vector<Beam> beams(nb);
  // HF: the first beam of each group starts at 0, the others at -1e9.
  for (int i = 0; i < nb; ++i) beams[i].score = (i % gs == 0) ? 0.0f : -1.0e9f;
  std::vector<LegacyHypotheses> hyps(
      groups, LegacyHypotheses(gs, config.length_penalty, config.early_stopping, runner.budget()));
  std::vector<bool> done(groups, false);
  {
    std::vector<const std::vector<int>*> rows;
    for (auto& b : beams) rows.push_back(&b.tokens);
    procs.on_prompt(runner.ids(rows));
  }

  for (int t = 0;; ++t) {
    auto logprobs = mx::subtract(logits, mx::logsumexp(logits, -1, true));
    std::vector<Beam> next(nb);
    std::vector<int> src(nb), current(nb, 0);
    std::vector<mx::array> step_scores;  // per group, for output_scores / output_logprobs
    const int generated = t + 1;
    for (int g = 0; g < groups; ++g) {
      const int first = g * gs;
      std::vector<int> chosen_tokens(gs), chosen_rows(gs);
      std::vector<float> chosen_scores(gs);
      if (done[g]) {
        // BeamSearchScorer.process on a done group: score 0, pad token, the group's first beam.
        for (int i = 0; i < gs; ++i) {
          chosen_tokens[i] = pad;
          chosen_rows[i] = 0;
          chosen_scores[i] = 0.0f;
        }
        // transformers 4.56 still runs the processors on a done group's rows; no returned hypothesis
        // reads them (a done group adds none after it is done), so zeros stand in.
        if (runner.records_scores()) step_scores.push_back(mx::zeros({gs, logprobs.shape(1)}, mx::float32));
      } else {
        auto group_lp = mx::slice(logprobs, {first, 0}, {first + gs, logprobs.shape(1)});
        mx::array ids = mx::array(0);
        if (procs.needs_ids()) {
          std::vector<const std::vector<int>*> rows;
          for (int i = 0; i < gs; ++i) rows.push_back(&beams[first + i].tokens);
          ids = runner.ids(rows);
        }
        std::optional<mx::array> diversity;
        if (g > 0 && config.diversity_penalty != 0.0) {
          // HammingDiversityLogitsProcessor: penalty * how often the earlier groups chose each token now.
          std::vector<float> freq(logprobs.shape(1), 0.0f);
          for (int i = 0; i < first; ++i) freq[current[i]] += 1.0f;
          for (auto& f : freq) f *= static_cast<float>(config.diversity_penalty);
          diversity = mx::array(freq.data(), {1, static_cast<int>(freq.size())}, mx::float32);
        }
        auto processed = procs.apply(group_lp, ids, diversity);
        if (runner.records_scores()) step_scores.push_back(processed);  // 4.56: before the beam scores
        std::vector<float> bs(gs);
        for (int i = 0; i < gs; ++i) bs[i] = beams[first + i].score;
        auto acc = mx::add(processed, mx::reshape(mx::array(bs.data(), {gs}, mx::float32), {gs, 1}));
        Candidates cand = top_candidates(acc, k);
        // BeamSearchScorer.process: EOS among the first group_size candidates -> a hypothesis; the
        // others fill the group's beams in order.
        int filled = 0;
        for (size_t r = 0; r < cand.values.size() && filled < gs; ++r) {
          const int row = cand.rows[r], token = cand.tokens[r];
          if (is_eos(token)) {
            if (static_cast<int>(r) >= gs) continue;
            Hypothesis h;
            h.tokens = beams[first + row].tokens;
            h.tokens.push_back(token);
            // transformers 4.56 reads the beam history from the flattened list of all groups with the
            // group-relative index (group 0's history, already updated this step for later groups).
            h.beam_indices = (g == 0 ? beams : next)[row].beam_indices;
            h.beam_indices.push_back(row);
            // The rows this hypothesis was really chosen from (its own group's history).
            h.rows = beams[first + row].beam_indices;
            h.rows.push_back(row);
            for (int& r : h.rows) r += first;
            h.reason = FinishReason::Eos;
            hyps[g].add(std::move(h), static_cast<double>(cand.values[r]), generated);
          } else {
            chosen_tokens[filled] = token;
            chosen_rows[filled] = row;
            chosen_scores[filled] = cand.values[r];
            ++filled;
          }
        }
        if (filled < gs) fail("generate", "beam search: too many candidates are EOS tokens");
        done[g] = hyps[g].is_done(static_cast<double>(cand.values[0]), generated);
      }
      for (int i = 0; i < gs; ++i) {
        const Beam& from = beams[first + chosen_rows[i]];
        Beam b;
        b.tokens = from.tokens;
        b.tokens.push_back(chosen_tokens[i]);
        b.beam_indices = from.beam_indices;
        b.beam_indices.push_back(chosen_rows[i]);  // group-relative, as transformers records it
        b.score = chosen_scores[i];
        next[first + i] = std::move(b);
        src[first + i] = first + chosen_rows[i];
        current[first + i] = chosen_tokens[i];
      }
    }
    beams = std::move(next);
    runner.record(logits, runner.records_scores() ? std::optional(mx::concatenate(step_scores, 0)) : std::nullopt);
    bool all_done = true;
    for (bool d : done) all_done = all_done && d;
    // transformers 4.56 stops when every group is done or every running beam hits a stopping criterion
    // (a running beam that meets a stop string alone keeps going, as there).
    bool all_hit = true;
    for (auto& b : beams) all_hit = all_hit && runner.check(b.tokens) != FinishReason::None;
    if (all_done || all_hit) break;
    runner.reorder(src);
    logits = runner.forward(current);
  }

  // BeamSearchScorer.finalize: groups not done add their running beams.
  std::vector<LegacyHypotheses::Entry> all;
  for (int g = 0; g < groups; ++g) {
    if (!done[g])
      for (int i = 0; i < gs; ++i) {
        Beam& b = beams[g * gs + i];
        Hypothesis h;
        h.tokens = b.tokens;
        h.beam_indices = b.beam_indices;
        h.rows = b.beam_indices;
        for (int& r : h.rows) r += g * gs;
        h.reason = runner.check(b.tokens);
        hyps[g].add(std::move(h), static_cast<double>(b.score), static_cast<int>(b.tokens.size()));
      }
    for (auto& e : hyps[g].entries()) all.push_back(e);
  }
  return runner.result(best_of(all, config.num_return_sequences));
}

}  // namespace mlxgp::beam
