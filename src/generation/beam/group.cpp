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
#include "generation/beam/search_state.h"
#include "generation/beam/searches.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::beam {

namespace {

class GroupBeams : public BeamSearchState {
 public:
  GroupBeams(Model& model, std::shared_ptr<const Tokenizer> tokenizer, const GenerationConfig& config,
             const GeneratorOptions& options)
      : BeamSearchState(model, std::move(tokenizer), config, options),
        config_(config),
        nb_(config.num_beams),
        groups_(config.num_beam_groups),
        gs_(nb_ / groups_),
        eos_(config.eos_token_id.value_or(std::vector<int>{})),
        k_(std::max(2, 1 + static_cast<int>(eos_.size())) * gs_),
        // HF generate() pads finished groups with pad_token_id, which defaults to the first EOS id.
        pad_(config.pad_token_id ? *config.pad_token_id : (eos_.empty() ? 0 : eos_[0])),
        procs_(model, config, options) {}

  mx::array prefill(const std::vector<int>& prompt_ids) override {
    mx::array logits = runner_.prefill(prompt_ids, nb_);
    beams_.assign(nb_, Beam{});
    // HF: the first beam of each group starts at 0, the others at -1e9.
    for (int i = 0; i < nb_; ++i) beams_[i].score = (i % gs_ == 0) ? 0.0f : -1.0e9f;
    hyps_.assign(groups_, LegacyHypotheses(gs_, config_.length_penalty, config_.early_stopping, runner_.budget()));
    done_.assign(groups_, false);
    std::vector<const std::vector<int>*> rows;
    for (auto& b : beams_) rows.push_back(&b.tokens);
    procs_.on_prompt(runner_.ids(rows));
    return logits;
  }

  bool step(const mx::array& logits) override {
    auto logprobs = mx::subtract(logits, mx::logsumexp(logits, -1, true));
    std::vector<Beam> next(nb_);
    std::vector<int> src(nb_), current(nb_, 0);
    std::vector<mx::array> step_scores;  // per group, for output_scores / output_logprobs
    const int generated = ++t_;
    for (int g = 0; g < groups_; ++g) {
      const int first = g * gs_;
      std::vector<int> chosen_tokens(gs_), chosen_rows(gs_);
      std::vector<float> chosen_scores(gs_);
      if (done_[g]) {
        // BeamSearchScorer.process on a done group: score 0, pad token, the group's first beam.
        for (int i = 0; i < gs_; ++i) {
          chosen_tokens[i] = pad_;
          chosen_rows[i] = 0;
          chosen_scores[i] = 0.0f;
        }
        // transformers 4.56 still runs the processors on a done group's rows; no returned hypothesis
        // reads them (a done group adds none after it is done), so zeros stand in.
        if (runner_.records_scores()) step_scores.push_back(mx::zeros({gs_, logprobs.shape(1)}, mx::float32));
      } else {
        auto group_lp = mx::slice(logprobs, {first, 0}, {first + gs_, logprobs.shape(1)});
        mx::array ids = mx::array(0);
        if (procs_.needs_ids()) {
          std::vector<const std::vector<int>*> rows;
          for (int i = 0; i < gs_; ++i) rows.push_back(&beams_[first + i].tokens);
          ids = runner_.ids(rows);
        }
        std::optional<mx::array> diversity;
        if (g > 0 && config_.diversity_penalty != 0.0) {
          // HammingDiversityLogitsProcessor: penalty * how often the earlier groups chose each token now.
          std::vector<float> freq(logprobs.shape(1), 0.0f);
          for (int i = 0; i < first; ++i) freq[current[i]] += 1.0f;
          for (auto& f : freq) f *= static_cast<float>(config_.diversity_penalty);
          diversity = mx::array(freq.data(), {1, static_cast<int>(freq.size())}, mx::float32);
        }
        auto processed = procs_.apply(group_lp, ids, diversity);
        if (runner_.records_scores()) step_scores.push_back(processed);  // 4.56: before the beam scores
        std::vector<float> bs(gs_);
        for (int i = 0; i < gs_; ++i) bs[i] = beams_[first + i].score;
        auto acc = mx::add(processed, mx::reshape(mx::array(bs.data(), {gs_}, mx::float32), {gs_, 1}));
        Candidates cand = top_candidates(acc, k_);
        procs_.check_candidates(cand.values.empty() ? NAN : cand.values[0], hyps_[g].size() > 0);
        // BeamSearchScorer.process: EOS among the first group_size candidates -> a hypothesis; the
        // others fill the group's beams in order.
        int filled = 0;
        for (size_t r = 0; r < cand.values.size() && filled < gs_; ++r) {
          const int row = cand.rows[r], token = cand.tokens[r];
          if (is_eos(token)) {
            if (static_cast<int>(r) >= gs_) continue;
            Hypothesis h;
            h.tokens = beams_[first + row].tokens;
            h.tokens.push_back(token);
            // transformers 4.56 reads the beam history from the flattened list of all groups with the
            // group-relative index (group 0's history, already updated this step for later groups).
            h.beam_indices = (g == 0 ? beams_ : next)[row].beam_indices;
            h.beam_indices.push_back(row);
            // The rows this hypothesis was really chosen from (its own group's history).
            h.rows = beams_[first + row].beam_indices;
            h.rows.push_back(row);
            for (int& source : h.rows) source += first;
            h.reason = FinishReason::Eos;
            hyps_[g].add(std::move(h), static_cast<double>(cand.values[r]), generated);
          } else {
            chosen_tokens[filled] = token;
            chosen_rows[filled] = row;
            chosen_scores[filled] = cand.values[r];
            ++filled;
          }
        }
        if (filled < gs_) fail("generate", "beam search: too many candidates are EOS tokens");
        done_[g] = hyps_[g].is_done(static_cast<double>(cand.values[0]), generated);
      }
      for (int i = 0; i < gs_; ++i) {
        const Beam& from = beams_[first + chosen_rows[i]];
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
    beams_ = std::move(next);
    runner_.record(logits, runner_.records_scores() ? std::optional(mx::concatenate(step_scores, 0)) : std::nullopt);
    bool all_done = true;
    for (bool d : done_) all_done = all_done && d;
    // transformers 4.56 stops when every group is done or every running beam hits a stopping criterion
    // (a running beam that meets a stop string alone keeps going, as there).
    bool all_hit = true;
    for (auto& b : beams_) all_hit = all_hit && runner_.check(b.tokens) != FinishReason::None;
    if (all_done || all_hit) return false;
    src_rows_ = src;
    new_tokens_ = current;
    return true;
  }

  GenerationResult result() override {
    // BeamSearchScorer.finalize: groups not done add their running beams.
    std::vector<LegacyHypotheses::Entry> all;
    for (int g = 0; g < groups_; ++g) {
      if (!done_[g])
        for (int i = 0; i < gs_; ++i) {
          Beam& b = beams_[g * gs_ + i];
          Hypothesis h;
          h.tokens = b.tokens;
          h.beam_indices = b.beam_indices;
          h.rows = b.beam_indices;
          for (int& r : h.rows) r += g * gs_;
          h.reason = runner_.check(b.tokens);
          hyps_[g].add(std::move(h), static_cast<double>(b.score), static_cast<int>(b.tokens.size()));
        }
      for (auto& e : hyps_[g].entries()) all.push_back(e);
    }
    return runner_.result(best_of(all, config_.num_return_sequences));
  }

  int num_beams() const override { return nb_; }

 private:
  bool is_eos(int t) const { return std::find(eos_.begin(), eos_.end(), t) != eos_.end(); }

  GenerationConfig config_;
  int nb_, groups_, gs_;
  std::vector<int> eos_;
  int k_, pad_;
  BeamProcessors procs_;
  std::vector<Beam> beams_;
  std::vector<LegacyHypotheses> hyps_;
  std::vector<bool> done_;
  int t_ = 0;
};

}  // namespace

std::unique_ptr<BeamSearchState> make_group_beams(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                                  const GenerationConfig& config, const GeneratorOptions& options) {
  return std::make_unique<GroupBeams>(model, std::move(tokenizer), config, options);
}

}  // namespace mlxgp::beam
