// Constrained beam search (force_words_ids) with transformers 4.56 semantics (_constrained_beam_search
// + ConstrainedBeamSearchScorer), the last release that ships it. Each step: the usual top-K
// continuations (an EOS one only finishes a hypothesis when every constraint is met), plus, for each
// beam, the tokens that advance its constraints; the beams are then picked round-robin over "banks"
// (levels of constraint progress), best first within a bank, so partially constrained beams survive.
#include <algorithm>
#include <cmath>
#include <numeric>

#include <mlx/mlx.h>

#include "generation/beam/beam_common.h"
#include "generation/beam/beam_processors.h"
#include "generation/beam/constraints.h"
#include "generation/beam/hypotheses.h"
#include "generation/beam/search_state.h"
#include "generation/beam/searches.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::beam {

namespace {

std::vector<int> joined(const std::vector<int>& a, const std::vector<int>& b) {
  std::vector<int> out(a);
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

}  // namespace

namespace {

class ConstrainedBeams : public BeamSearchState {
 public:
  ConstrainedBeams(Model& model, std::shared_ptr<const Tokenizer> tokenizer, const GenerationConfig& config,
                   const GeneratorOptions& options)
      : BeamSearchState(model, std::move(tokenizer), config, options),
        config_(config),
        nb_(config.num_beams),
        eos_(config.eos_token_id.value_or(std::vector<int>{})),
        k_(std::max(2, 1 + static_cast<int>(eos_.size())) * nb_),
        procs_(model, config, options),
        hyps_(nb_, config.length_penalty, config.early_stopping, 0) {
    const int vocab = model.config().vocab_size;
    for (auto& alts : *config_.force_words_ids) {
      for (auto& a : alts)
        for (int id : a)
          if (id < 0 || id >= vocab)
            fail("generate", "force_words_ids token id " + std::to_string(id) + " is outside the vocabulary (size " +
                                 std::to_string(vocab) + ")");
      for (size_t i = 0; i < alts.size(); ++i)
        for (size_t j = 0; j < alts.size(); ++j)
          if (i != j && alts[i].size() <= alts[j].size() && std::equal(alts[i].begin(), alts[i].end(), alts[j].begin()))
            fail("generate", "force_words_ids: one alternative of a disjunctive constraint is a prefix of another");
      constraints_.emplace_back(alts);
    }
  }

  mx::array prefill(const std::vector<int>& prompt_ids) override {
    mx::array logits = runner_.prefill(prompt_ids, nb_);
    prompt_ = runner_.prompt();
    beams_.assign(nb_, Beam{});
    for (int i = 1; i < nb_; ++i) beams_[i].score = -1.0e9f;
    hyps_ = LegacyHypotheses(nb_, config_.length_penalty, config_.early_stopping, runner_.budget());
    std::vector<const std::vector<int>*> rows;
    for (auto& b : beams_) rows.push_back(&b.tokens);
    procs_.on_prompt(runner_.ids(rows));
    return logits;
  }

  bool step(const mx::array& logits) override {
    const int generated = ++t_;
    auto logprobs = mx::subtract(logits, mx::logsumexp(logits, -1, true));
    mx::array ids = mx::array(0);
    if (procs_.needs_ids()) {
      std::vector<const std::vector<int>*> rows;
      for (auto& b : beams_) rows.push_back(&b.tokens);
      ids = runner_.ids(rows);
    }
    std::vector<float> bs;
    for (auto& b : beams_) bs.push_back(b.score);
    auto acc = mx::add(procs_.apply(logprobs, ids), mx::reshape(mx::array(bs.data(), {nb_}, mx::float32), {nb_, 1}));
    // transformers 4.56 _constrained_beam_search records the scores with the beam scores added.
    runner_.record(logits, acc);
    Candidates cand = top_candidates(acc, k_);
    procs_.check_candidates(cand.values.empty() ? NAN : cand.values[0], hyps_.size() > 0);

    // ConstrainedBeamSearchScorer.process: EOS continuations among the first num_beams finish a
    // hypothesis only when the constraints_ are met; the others fill the beams in order.
    std::vector<float> sc;
    std::vector<int> tok, row;
    for (size_t r = 0; r < cand.values.size() && static_cast<int>(sc.size()) < nb_; ++r) {
      const int b = cand.rows[r], token = cand.tokens[r];
      if (is_eos(token)) {
        if (static_cast<int>(r) >= nb_) continue;
        if (completes(joined(prompt_, beams_[b].tokens))) {
          Hypothesis h;
          h.tokens = beams_[b].tokens;
          h.tokens.push_back(token);
          h.beam_indices = beams_[b].beam_indices;
          h.beam_indices.push_back(b);
          h.reason = FinishReason::Eos;
          hyps_.add(std::move(h), static_cast<double>(cand.values[r]), generated);
        }
      } else {
        sc.push_back(cand.values[r]);
        tok.push_back(token);
        row.push_back(b);
      }
    }
    if (static_cast<int>(sc.size()) < nb_) fail("generate", "beam search: too many candidates are EOS tokens");

    // step_sentence_constraint: add, per beam, the continuations that advance its constraints_.
    std::vector<std::vector<int>> seqs;  // full sequences already proposed (prompt_ included)
    std::vector<ConstraintListState> states;
    for (int i = 0; i < nb_; ++i) {
      auto full = joined(prompt_, beams_[row[i]].tokens);
      full.push_back(tok[i]);
      ConstraintListState s(constraints_);
      s.reset(full);
      states.push_back(std::move(s));
      seqs.push_back(std::move(full));
    }
    std::vector<int> new_rows, new_tokens;
    for (int i = 0; i < nb_; ++i) {
      auto pre = joined(prompt_, beams_[i].tokens);
      ConstraintListState adv(constraints_);
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
      auto picked =
          mx::take(mx::reshape(acc, {-1}), mx::array(flat_idx.data(), {static_cast<int>(flat_idx.size())}, mx::int32));
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
      for (int j = 0; j < nb_; ++j) {
        const int m = order[rearr[j]];
        sc.push_back(all_scores[m]);
        tok.push_back(all_tokens[m]);
        row.push_back(all_rows[m]);
      }
    }
    done_ = done_ || hyps_.is_done(static_cast<double>(cand.values[0]), generated);

    std::vector<Beam> next(nb_);
    for (int i = 0; i < nb_; ++i) {
      const Beam& from = beams_[row[i]];
      next[i].tokens = from.tokens;
      next[i].tokens.push_back(tok[i]);
      next[i].beam_indices = from.beam_indices;
      next[i].beam_indices.push_back(row[i]);
      next[i].score = sc[i];
    }
    beams_ = std::move(next);
    bool all_hit = true;
    for (auto& b : beams_) all_hit = all_hit && runner_.check(b.tokens) != FinishReason::None;
    if (done_ || all_hit) return false;
    src_rows_ = row;
    new_tokens_ = tok;
    procs_.on_step(tok);
    return true;
  }

  GenerationResult result() override {
    // finalize: running beams that meet the constraints_; when fewer than num_return_sequences did, every
    // other running beam too (transformers' loop never reaches its break).
    if (!done_) {
      std::vector<bool> collected(nb_, false);
      int n_collected = 0;
      for (int i = 0; i < nb_; ++i) {
        if (!completes(joined(prompt_, beams_[i].tokens))) continue;
        Hypothesis h{beams_[i].tokens, beams_[i].beam_indices, 0, runner_.check(beams_[i].tokens), {}};
        hyps_.add(std::move(h), static_cast<double>(beams_[i].score), static_cast<int>(beams_[i].tokens.size()));
        collected[i] = true;
        ++n_collected;
      }
      if (n_collected < config_.num_return_sequences)
        for (int i = 0; i < nb_; ++i) {
          if (collected[i]) continue;
          Hypothesis h{beams_[i].tokens, beams_[i].beam_indices, 0, runner_.check(beams_[i].tokens), {}};
          hyps_.add(std::move(h), static_cast<double>(beams_[i].score), static_cast<int>(beams_[i].tokens.size()));
        }
    }
    return runner_.result(best_of(hyps_.entries(), config_.num_return_sequences));
  }

  int num_beams() const override { return nb_; }

 private:
  bool is_eos(int t) const { return std::find(eos_.begin(), eos_.end(), t) != eos_.end(); }
  bool completes(const std::vector<int>& full) const {
    ConstraintListState s(constraints_);
    s.reset(full);
    return s.completed();
  }

  GenerationConfig config_;
  int nb_;
  std::vector<int> eos_;
  int k_;
  BeamProcessors procs_;
  std::vector<Constraint> constraints_;
  std::vector<int> prompt_;
  std::vector<Beam> beams_;
  LegacyHypotheses hyps_;
  bool done_ = false;
  int t_ = 0;
};

}  // namespace

std::unique_ptr<BeamSearchState> make_constrained_beams(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                                        const GenerationConfig& config,
                                                        const GeneratorOptions& options) {
  return std::make_unique<ConstrainedBeams>(model, std::move(tokenizer), config, options);
}

}  // namespace mlxgp::beam
