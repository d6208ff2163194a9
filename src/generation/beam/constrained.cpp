// Constrained beam search (force_words_ids) with transformers 4.56 semantics (_constrained_beam_search
// + ConstrainedBeamSearchScorer), the last release that ships it. Each step: the usual top-K
// continuations (an EOS one only finishes a hypothesis when every constraint is met), plus, for each
// beam, the tokens that advance its constraints; the beams are then picked round-robin over "banks"
// (levels of constraint progress), best first within a bank, so partially constrained beams survive.
#include <algorithm>
#include <numeric>

#include <mlx/mlx.h>

#include "generation/beam/beam_common.h"
#include "generation/beam/beam_processors.h"
#include "generation/beam/constraints.h"
#include "generation/beam/hypotheses.h"
#include "generation/beam/searches.h"
#include "mlxgp/error.h"

namespace mlxgp::beam {

namespace {

std::vector<int> joined(const std::vector<int>& a, const std::vector<int>& b) {
  std::vector<int> out(a);
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

}  // namespace

GenerationResult constrained_beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                         const std::vector<int>& prompt_ids, const GenerationConfig& config,
                                         const GeneratorOptions& options) {
  const int nb = config.num_beams;
  const std::vector<int> eos = config.eos_token_id.value_or(std::vector<int>{});
  const int k = std::max(2, 1 + static_cast<int>(eos.size())) * nb;
  const auto is_eos = [&](int t) { return std::find(eos.begin(), eos.end(), t) != eos.end(); };
  const int vocab = model.config().vocab_size;
  std::vector<Constraint> constraints;
  for (auto& alts : *config.force_words_ids) {
    for (auto& a : alts)
      for (int id : a)
        if (id < 0 || id >= vocab)
          fail("generate", "force_words_ids token id " + std::to_string(id) + " is outside the vocabulary (size " +
                               std::to_string(vocab) + ")");
    for (size_t i = 0; i < alts.size(); ++i)
      for (size_t j = 0; j < alts.size(); ++j)
        if (i != j && alts[i].size() <= alts[j].size() && std::equal(alts[i].begin(), alts[i].end(), alts[j].begin()))
          fail("generate", "force_words_ids: one alternative of a disjunctive constraint is a prefix of another");
    constraints.emplace_back(alts);
  }
  const auto completes = [&](const std::vector<int>& full) {
    ConstraintListState s(constraints);
    s.reset(full);
    return s.completed();
  };

  BeamRunner runner(model, tokenizer, config, options);
  BeamProcessors procs(model, config, options);
  mx::array logits = runner.prefill(prompt_ids, nb);
  const std::vector<int>& prompt = runner.prompt();
  std::vector<Beam> beams(nb);
  for (int i = 1; i < nb; ++i) beams[i].score = -1.0e9f;
  LegacyHypotheses hyps(nb, config.length_penalty, config.early_stopping, runner.budget());
  bool done = false;
  {
    std::vector<const std::vector<int>*> rows;
    for (auto& b : beams) rows.push_back(&b.tokens);
    procs.on_prompt(runner.ids(rows));
  }

  for (int t = 0;; ++t) {
    const int generated = t + 1;
    auto logprobs = mx::subtract(logits, mx::logsumexp(logits, -1, true));
    mx::array ids = mx::array(0);
    if (procs.needs_ids()) {
      std::vector<const std::vector<int>*> rows;
      for (auto& b : beams) rows.push_back(&b.tokens);
      ids = runner.ids(rows);
    }
    std::vector<float> bs;
    for (auto& b : beams) bs.push_back(b.score);
    auto acc = mx::add(procs.apply(logprobs, ids), mx::reshape(mx::array(bs.data(), {nb}, mx::float32), {nb, 1}));
    // transformers 4.56 _constrained_beam_search records the scores with the beam scores added.
    runner.record(logits, acc);
    Candidates cand = top_candidates(acc, k);

    // ConstrainedBeamSearchScorer.process: EOS continuations among the first num_beams finish a
    // hypothesis only when the constraints are met; the others fill the beams in order.
    std::vector<float> sc;
    std::vector<int> tok, row;
    for (size_t r = 0; r < cand.values.size() && static_cast<int>(sc.size()) < nb; ++r) {
      const int b = cand.rows[r], token = cand.tokens[r];
      if (is_eos(token)) {
        if (static_cast<int>(r) >= nb) continue;
        if (completes(joined(prompt, beams[b].tokens))) {
          Hypothesis h;
          h.tokens = beams[b].tokens;
          h.tokens.push_back(token);
          h.beam_indices = beams[b].beam_indices;
          h.beam_indices.push_back(b);
          h.reason = FinishReason::Eos;
          hyps.add(std::move(h), static_cast<double>(cand.values[r]), generated);
        }
      } else {
        sc.push_back(cand.values[r]);
        tok.push_back(token);
        row.push_back(b);
      }
    }
    if (static_cast<int>(sc.size()) < nb) fail("generate", "beam search: too many candidates are EOS tokens");

    // step_sentence_constraint: add, per beam, the continuations that advance its constraints.
    std::vector<std::vector<int>> seqs;  // full sequences already proposed (prompt included)
    std::vector<ConstraintListState> states;
    for (int i = 0; i < nb; ++i) {
      auto full = joined(prompt, beams[row[i]].tokens);
      full.push_back(tok[i]);
      ConstraintListState s(constraints);
      s.reset(full);
      states.push_back(std::move(s));
      seqs.push_back(std::move(full));
    }
    std::vector<int> new_rows, new_tokens;
    for (int i = 0; i < nb; ++i) {
      auto pre = joined(prompt, beams[i].tokens);
      ConstraintListState adv(constraints);
      adv.reset(pre);
      if (adv.completed()) continue;
      for (int token : adv.advance()) {
        ConstraintListState s = adv.copy_stateful();
        s.add(token);
        pre.push_back(token);
        if (std::find(seqs.begin(), seqs.end(), pre) == seqs.end()) {
          seqs.push_back(pre);
          new_rows.push_back(i);
          new_tokens.push_back(token);
          states.push_back(std::move(s));
        }
        pre.pop_back();
      }
    }
    if (!new_rows.empty()) {
      // The new continuations' accumulated scores: one gather, one sync.
      std::vector<int> flat_idx;
      for (size_t j = 0; j < new_rows.size(); ++j) flat_idx.push_back(new_rows[j] * acc.shape(1) + new_tokens[j]);
      auto picked = mx::take(mx::reshape(acc, {-1}), mx::array(flat_idx.data(), {static_cast<int>(flat_idx.size())},
                                                                 mx::int32));
      mx::eval(picked);
      const float* pv = picked.data<float>();
      std::vector<float> all_scores(sc);
      std::vector<int> all_tokens(tok), all_rows(row);
      for (size_t j = 0; j < new_rows.size(); ++j) {
        all_scores.push_back(pv[j]);
        all_tokens.push_back(new_tokens[j]);
        all_rows.push_back(new_rows[j]);
      }
      const int n = static_cast<int>(all_scores.size());
      std::vector<float> zipped(n);
      std::vector<int> banks(n);
      for (int j = 0; j < n; ++j) {
        banks[j] = states[j].bank();
        zipped[j] = static_cast<float>(banks[j] * 100) + all_scores[j];  // torch: int64 * 100 + float32
      }
      std::vector<int> order = order_desc(zipped);
      // Round-robin over the banks: the best of each bank first, then the second of each, ...
      std::vector<int> increments(n);
      int counter = -1, cur = banks[order[0]];
      for (int j = 0; j < n; ++j) {
        if (banks[order[j]] == cur) {
          ++counter;
        } else {
          counter = 0;
          cur = banks[order[j]];
        }
        increments[j] = counter;
      }
      std::vector<int> rearr(n);
      std::iota(rearr.begin(), rearr.end(), 0);
      std::stable_sort(rearr.begin(), rearr.end(), [&](int a, int b) { return increments[a] < increments[b]; });
      sc.clear();
      tok.clear();
      row.clear();
      for (int j = 0; j < nb; ++j) {
        const int m = order[rearr[j]];
        sc.push_back(all_scores[m]);
        tok.push_back(all_tokens[m]);
        row.push_back(all_rows[m]);
      }
    }
    done = done || hyps.is_done(static_cast<double>(cand.values[0]), generated);

    std::vector<Beam> next(nb);
    for (int i = 0; i < nb; ++i) {
      const Beam& from = beams[row[i]];
      next[i].tokens = from.tokens;
      next[i].tokens.push_back(tok[i]);
      next[i].beam_indices = from.beam_indices;
      next[i].beam_indices.push_back(row[i]);
      next[i].score = sc[i];
    }
    beams = std::move(next);
    bool all_hit = true;
    for (auto& b : beams) all_hit = all_hit && runner.check(b.tokens) != FinishReason::None;
    if (done || all_hit) break;
    runner.reorder(row);
    procs.on_step(tok);
    logits = runner.forward(tok);
  }

  // finalize: running beams that meet the constraints; when fewer than num_return_sequences did, every
  // other running beam too (transformers' loop never reaches its break).
  if (!done) {
    std::vector<bool> collected(nb, false);
    int n_collected = 0;
    for (int i = 0; i < nb; ++i) {
      if (!completes(joined(prompt, beams[i].tokens))) continue;
      Hypothesis h{beams[i].tokens, beams[i].beam_indices, 0, runner.check(beams[i].tokens), {}};
      hyps.add(std::move(h), static_cast<double>(beams[i].score), static_cast<int>(beams[i].tokens.size()));
      collected[i] = true;
      ++n_collected;
    }
    if (n_collected < config.num_return_sequences)
      for (int i = 0; i < nb; ++i) {
        if (collected[i]) continue;
        Hypothesis h{beams[i].tokens, beams[i].beam_indices, 0, runner.check(beams[i].tokens), {}};
        hyps.add(std::move(h), static_cast<double>(beams[i].score), static_cast<int>(beams[i].tokens.size()));
      }
  }
  return runner.result(best_of(hyps.entries(), config.num_return_sequences));
}

}  // namespace mlxgp::beam
