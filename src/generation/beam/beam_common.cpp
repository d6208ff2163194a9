// BeamRunner: the model side of beam search (prefill once, tile, one [num_beams, 1] forward per step,
// one cache select per step) and the per-candidate stopping checks.
#include "generation/beam/beam_common.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include <mlx/memory.h>
#include <mlx/mlx.h>
#include <mlx/random.h>

#include "generation/core/decode_group.h"
#include "generation/core/logits_guard.h"
#include "cache/prefill.h"
#include "generation/core/setup.h"
#include "generation/prompt_budget.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::beam {

BeamRunner::BeamRunner(Model& model, std::shared_ptr<const Tokenizer> tokenizer, const GenerationConfig& config,
                       const GeneratorOptions& options)
    : model_(model), tokenizer_(std::move(tokenizer)), options_(options) {
  if (options_.prefill_chunk_size < 1) fail("generate", "prefill_chunk_size must be >= 1");
  stop_ = stopping_criteria(config, options_);
  // Budget as the Generator computes it (HF: max_new_tokens wins, else max_length counts the prompt).
  config_ = config;
  cache_options_ = cache_options_from(config);
  validate(cache_options_);  // throws [cache]
}

mx::array BeamRunner::prefill(const std::vector<int>& prompt_ids, int rows) {
  stop_.budget = check_prompt_and_budget(model_.config(), config_, prompt_ids, model_.hooks().added_positions());
  const int n = static_cast<int>(prompt_ids.size());
  start_ = std::chrono::steady_clock::now();
  mx::reset_peak_memory();
  model_.hooks().set_prompt_length(n);
  prompt_ = prompt_ids;
  rows_ = rows;
  // The config's caches (rotating for max_kv_size, quantized for kv_bits), prefilled as the Generator
  // prefills them; select() reorders every kind.
  caches_ = make_caches(model_, cache_options_);
  mx::array ids(prompt_ids.data(), {1, n}, mx::int32);
  auto last = prefill_tokens(model_, caches_, ids, 0,
                             {cache_options_, options_.prefill_chunk_size, options_.kv_prefill_step_size});
  // HF expands the prompt to num_beams rows and prefills them all; the rows are identical, so one
  // prefill tiled to the beams gives the same caches.
  if (rows > 1) {
    auto zeros = mx::zeros({rows}, mx::int32);
    for (auto& c : caches_) c->select(zeros);
    last = mx::repeat(last, rows, 0);
  }
  return checked(mx::astype(last, mx::float32));
}

mx::array BeamRunner::forward(const std::vector<int>& tokens) {
  mark_decoding();
  mx::array t(tokens.data(), {static_cast<int>(tokens.size()), 1}, mx::int32);
  auto logits = forward_and_quantize(model_, caches_, t, 1, cache_options_);
  return checked(mx::astype(mx::reshape(logits, {logits.shape(0), logits.shape(-1)}), mx::float32));
}

mx::array BeamRunner::checked(const mx::array& logits) {
  ++checked_steps_;
  if (guards_logits(config_)) {
    auto bad = invalid_logits(logits);
    mx::eval(logits, bad);
    if (bad.item<bool>()) fail_invalid_logits(checked_steps_);
  }
  return logits;
}

void BeamRunner::mark_decoding() {
  if (prefill_seconds_ == 0)
    prefill_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void BeamRunner::reorder(const std::vector<int>& rows) {
  // Identity reorders are common once beams settle: skip the gather then.
  bool identity = static_cast<int>(rows.size()) == rows_;
  for (int i = 0; identity && i < rows_; ++i) identity = rows[i] == i;
  if (identity) return;
  mx::array idx(rows.data(), {static_cast<int>(rows.size())}, mx::int32);
  for (auto& c : caches_) c->select(idx);
  rows_ = static_cast<int>(rows.size());
}

FinishReason BeamRunner::check(const std::vector<int>& tokens, int extra_token) {
  const double elapsed =
      stop_.max_time ? std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count() : 0.0;
  const int produced = static_cast<int>(tokens.size()) + 1;
  scratch_.clear();
  // EOS and the budget only read the last token; stop strings and the callback read the whole row.
  if (stop_.needs_ids()) scratch_.insert(scratch_.end(), prompt_.begin(), prompt_.end());
  scratch_.insert(scratch_.end(), tokens.begin(), tokens.end());
  scratch_.push_back(extra_token);
  return stop_.check(scratch_, produced, elapsed);
}

FinishReason BeamRunner::check(const std::vector<int>& tokens) {
  if (tokens.empty()) return FinishReason::None;
  std::vector<int> head(tokens.begin(), tokens.end() - 1);
  return check(head, tokens.back());
}

mx::array BeamRunner::ids(const std::vector<const std::vector<int>*>& rows) const {
  const int n = static_cast<int>(prompt_.size());
  const int t = rows.empty() ? 0 : static_cast<int>(rows[0]->size());
  std::vector<int> flat;
  flat.reserve(rows.size() * (n + t));
  for (auto* r : rows) {
    if (static_cast<int>(r->size()) != t) fail("generate", "beam rows of different lengths");
    flat.insert(flat.end(), prompt_.begin(), prompt_.end());
    flat.insert(flat.end(), r->begin(), r->end());
  }
  return mx::array(flat.data(), {static_cast<int>(rows.size()), n + t}, mx::int32);
}

void BeamRunner::record(const mx::array& logits, const std::optional<mx::array>& scores) {
  if (config_.output_logits) step_logits_.push_back(logits);
  if (scores && records_scores()) step_scores_.push_back(*scores);
}

namespace {

// All steps [T, R, V] flattened to [T * R, V] (one stack for every hypothesis), or nullopt.
std::optional<mx::array> flat_steps(const std::vector<mx::array>& steps) {
  if (steps.empty()) return std::nullopt;
  auto all = mx::stack(steps, 0);
  return mx::reshape(all, {all.shape(0) * all.shape(1), all.shape(2)});
}

// Row rows[t] of step t, t < rows.size(): [n, V].
mx::array gather_rows(const mx::array& flat, int rows_per_step, const std::vector<int>& rows) {
  std::vector<int> idx(rows.size());
  for (size_t t = 0; t < rows.size(); ++t) idx[t] = static_cast<int>(t) * rows_per_step + rows[t];
  return mx::take(flat, mx::array(idx.data(), {static_cast<int>(idx.size())}, mx::int32), 0);
}

}  // namespace

GenerationResult BeamRunner::result(const std::vector<Hypothesis>& hyps) const {
  // transformers returns a beam the processors masked out (score -inf: fewer allowed continuations than
  // beams) like any other; its tokens are ones no processor allows, so it is an error here.
  for (auto& h : hyps)
    if (!(h.score > -std::numeric_limits<float>::infinity()))
      fail("generate",
           "beam search found fewer sequences than num_return_sequences that the processors allow "
           "(the others score -inf: every continuation was masked); ask for fewer");
  GenerationResult out;
  out.prompt_token_ids = prompt_;
  const auto all_logits = flat_steps(step_logits_), all_scores = flat_steps(step_scores_);
  int total = 0, longest = 0;
  for (auto& h : hyps) {
    GeneratedSequence seq;
    seq.token_ids = h.tokens;
    seq.finish_reason = h.reason;
    seq.sequence_score = h.score;
    seq.beam_indices = h.beam_indices;
    const std::vector<int>& rows = h.rows.empty() ? h.beam_indices : h.rows;
    if (!h.tokens.empty() && rows.size() == h.tokens.size()) {
      // One host read per requested output and sequence, after the search (no per-step syncs).
      if (all_logits) {
        seq.logits = gather_rows(*all_logits, step_logits_[0].shape(0), rows);
        seq.token_logits = chosen_entries(*seq.logits, h.tokens);
      }
      if (all_scores) {
        auto s = gather_rows(*all_scores, step_scores_[0].shape(0), rows);
        if (config_.output_scores) {
          seq.scores = s;
          seq.token_scores = chosen_entries(s, h.tokens);
        }
        // log_softmax of the recorded row at the chosen token (a row's constant, such as the beam score
        // constrained beams record, cancels out).
        if (config_.output_logprobs)
          seq.logprobs = chosen_entries(mx::subtract(s, mx::logsumexp(s, -1, true)), h.tokens);
      }
    }
    if (tokenizer_ && !h.tokens.empty()) {
      // As generate(): a final special EOS token stays in token_ids but not in the text.
      size_t n = h.tokens.size();
      if (h.reason == FinishReason::Eos && tokenizer_->is_special(h.tokens.back())) --n;
      seq.text = tokenizer_->decode(std::span<const int>(h.tokens.data(), n));
    }
    total += static_cast<int>(h.tokens.size());
    longest = std::max(longest, static_cast<int>(h.tokens.size()));
    out.sequences.push_back(std::move(seq));
  }
  auto& s = out.stats;
  s.prompt_tokens = static_cast<int>(prompt_.size());
  s.generated_tokens = total;
  const double all = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (prefill_seconds_ > 0) s.prefill_tokens_per_s = s.prompt_tokens / prefill_seconds_;
  // Decode speed counts beam steps (each extends every beam by one token) after the first.
  if (longest > 1 && all > prefill_seconds_) s.decode_tokens_per_s = (longest - 1) / (all - prefill_seconds_);
  s.peak_memory_bytes = mx::get_peak_memory();
  return out;
}

Candidates top_candidates(const mx::array& scores, int k, const std::optional<mx::array>& key) {
  const int r = scores.shape(0), v = scores.shape(1);
  auto flat = mx::reshape(scores, {1, r * v});
  k = std::min(k, r * v);
  auto rank = key ? mx::add(flat, mx::random::gumbel(flat.shape(), mx::float32, *key)) : flat;
  // argpartition of the negated ranks puts the k largest first (in no particular order).
  auto idx = mx::slice(mx::argpartition(mx::negative(rank), k - 1, 1), {0, 0}, {1, k});
  auto vals = mx::take_along_axis(flat, idx, 1);
  idx = mx::astype(idx, mx::int32);
  mx::eval(vals, idx);
  const float* pv = vals.data<float>();
  const int32_t* pi = idx.data<int32_t>();
  std::vector<float> raw(pv, pv + k);
  std::vector<int> flat_idx(pi, pi + k);
  // Sort by score, then by flat index on ties (torch.topk's order on exact ties is unspecified).
  std::vector<int> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    if (raw[a] != raw[b]) return raw[a] > raw[b];
    return flat_idx[a] < flat_idx[b];
  });
  Candidates c;
  for (int i : order) {
    c.values.push_back(raw[i]);
    c.rows.push_back(flat_idx[i] / v);
    c.tokens.push_back(flat_idx[i] % v);
  }
  return c;
}

std::vector<int> order_desc(const std::vector<float>& values) {
  std::vector<int> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return values[a] > values[b]; });
  return order;
}

}  // namespace mlxgp::beam
