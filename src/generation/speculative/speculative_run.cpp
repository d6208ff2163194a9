// SpeculativeRun: each round takes up to k candidates from a CandidateGenerator, verifies them with ONE
// target forward over [last token, candidates] (k + 1 positions), keeps the accepted prefix plus one
// target token, and trims the KV caches back to it. Every device computation of a round (draft chain,
// verification, acceptance) is one lazy graph evaluated with one host sync.
#include "generation/speculative/speculative_run.h"

#include <algorithm>
#include <chrono>

#include <mlx/memory.h>
#include <mlx/mlx.h>

#include "cache/prefill.h"
#include "generation/core/decode_group.h"
#include "generation/core/logits_guard.h"
#include "generation/core/sampler.h"
#include "generation/core/setup.h"
#include "generation/core/step_recorder.h"
#include "generation/prompt_budget.h"
#include "generation/speculative/acceptance.h"
#include "mlxgp/recurrent_cache.h"
#include "generation/speculative/candidates.h"
#include "generation/speculative/draft_model.h"
#include "generation/speculative/processor_track.h"
#include "mlxgp/cache_options.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::speculative {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

mx::array ids_array(const std::vector<int>& ids) {
  return mx::array(ids.data(), {1, static_cast<int>(ids.size())}, mx::int32);
}

// Rows [from, to) of a [n, V] array.
mx::array rows(const mx::array& a, int from, int to) { return mx::slice(a, {from, 0}, {to, a.shape(-1)}); }

}  // namespace

class SpeculativeRun::Impl {
 public:
  Impl(Model& target, std::shared_ptr<Model> draft, const GenerationConfig& config, const GeneratorOptions& options)
      : target_(target),
        config_(config),
        cache_opts_(cache_options_from(config)),
        target_track_(build_logits_processors(config, speculative::speculative_context(options))),
        sampler_(config),
        recorder_(config),
        chunk_(options.prefill_chunk_size),
        kv_step_(options.kv_prefill_step_size) {
    stop_ = stopping_criteria(config_, options);
    memory_trace_ = !options.memory_trace_at.empty();
    const bool has_draft = draft != nullptr;
    k_ = has_draft ? config_.num_draft_tokens : *config_.prompt_lookup_num_tokens;
    // transformers: rejection sampling needs the draft's probabilities; exact-match (mlx-lm) and prompt
    // lookup (no draft distribution) compare tokens.
    rejection_ = config_.do_sample && has_draft && !config_.speculative_exact_match;
    if (has_draft)
      candidates_ = speculative::make_draft_candidates(std::move(draft), config_, options,
                                                       [this](const mx::array& s) { return choose(s); });
    else candidates_ = speculative::make_lookup_candidates(config_, stop_.eos);
  }

  void check(const std::vector<int>& prompt) {
    const int budget = check_prompt_and_budget(target_.config(), config_, prompt, target_.hooks().added_positions());
    const int n = static_cast<int>(prompt.size());
    stop_.budget = budget;
    if (has_recurrent_state(target_.make_caches()))
      fail("generate", "speculative and prompt-lookup decoding roll rejected candidates back, which " +
                           target_.config().model_type + "'s recurrent layers (" +
                           recurrent_layer_kind(target_.config()) + ") cannot");
    // A rotating cache can only roll back until it wraps (mlx-lm's is_trimmable); refuse up front
    // rather than fail halfway. A round drafts at most the tokens left (whatever num_draft_tokens or
    // prompt_lookup_num_tokens says), so a cache holds at most the prompt and the budget.
    const long long need = static_cast<long long>(n) + budget;
    if (cache_opts_.max_kv_size && need > *cache_opts_.max_kv_size)
      fail("generate", "speculative decoding needs KV caches that can roll back: a rotating cache (max_kv_size " +
                           std::to_string(*cache_opts_.max_kv_size) + ") cannot once it wraps, and this run may need " +
                           std::to_string(need) + " positions (prompt + budget)");
    // kv_bits: a verification forward (k + 1 positions at once) rounds differently from plain decoding's
    // one-token forwards (other kernels: ~2e-5 in the logits on standard caches). Quantizing the keys and
    // values turns such rounding into whole 4/8-bit steps, which move the logits by up to ~0.1 and part near
    // ties (measured: 2 of 6 prompts at kv_bits 8 within 32 tokens; mlx-lm's verification is row-invariant
    // on the CPU, mlxgp's kernels are not). Exact only while no forward reads a quantized cache: plain
    // decoding's last forward is at position n + budget - 2 and reads one iff quantized_kv_start <= it
    // (unset: quantized from the first position).
    if (cache_opts_.kv_bits) {
      const long long last = static_cast<long long>(n) + budget - 2;
      if (!cache_opts_.quantized_kv_start || *cache_opts_.quantized_kv_start <= last)
        fail("generate",
             "speculative and prompt-lookup decoding cannot give plain decoding's tokens on a quantized KV cache "
             "(their verification forwards round differently and kv_bits amplifies it): quantized_kv_start must "
             "be at least prompt + max_new_tokens - 1 (" +
                 std::to_string(last + 1) + " here) so that no forward reads a quantized cache");
    }
    if (memory_trace_)
      fail("generate",
           "memory traces (memory_trace_at) are recorded by plain decoding only, not by speculative "
           "or prompt-lookup decoding");
  }

  void start(const std::vector<int>& prompt) {
    check(prompt);
    const int n = static_cast<int>(prompt.size());

    start_ = std::chrono::steady_clock::now();
    target_.hooks().set_prompt_length(n);
    ids_ = prompt;
    auto prompt_ids = ids_array(prompt);
    target_track_.on_prompt(prompt_ids);
    caches_ = make_caches(target_, cache_opts_);
    // As mlx-lm's speculative_generate_step and transformers' assisted decoding: the prompt less its last
    // token fills the caches, and the first round already drafts from the full prompt (the last prompt
    // token leads the first verification forward). With kv_bits the caches then hold what plain
    // decoding's hold before its last prompt token (quantized at the same points: prefill_prefix); fed
    // as a prompt of its own, prompt[:-1] would hold back one more token and quantize one position early.
    if (n > 1)
      prefill_prefix(target_, caches_, mx::slice(prompt_ids, {0, 0}, {1, n - 1}), 0, {cache_opts_, chunk_, kv_step_});
    candidates_->start(prompt);
  }

  // mlx-lm drafts min(num_draft_tokens, tokens left): near the budget the last candidates can all be
  // accepted without the bonus token (the output does not change; the acceptance figures then match).
  bool next_round(const std::function<void(int)>& emit) {
    return round(stop_.budget - static_cast<int>(generated_.size()), emit);
  }

  const std::vector<int>& generated() const { return generated_; }
  FinishReason finish_reason() const { return finish_; }
  void cancel() { finish_ = FinishReason::Cancelled; }
  const SpeculativeStats& stats() const { return stats_; }
  double prefill_seconds() const { return prefill_seconds_; }
  double decode_seconds() const { return decode_seconds_; }
  int first_round_tokens() const { return first_round_tokens_; }
  const StepRecorder& recorder() const { return recorder_; }

 private:
  // One token [1] from processed scores [1, V].
  mx::array choose(const mx::array& scores) { return mx::reshape(sampler_.choose(scores), {1}); }

  // Appends a produced token and checks the stopping criteria; true when generation ends here.
  bool produce(int token, const std::function<void(int)>& emit) {
    ids_.push_back(token);
    generated_.push_back(token);
    const int produced = static_cast<int>(generated_.size());
    if (stats_.target_forwards <= 1) {  // the first round: its tokens count as the prefill's
      first_token_ = std::chrono::steady_clock::now();
      prefill_seconds_ = seconds_since(start_);
      first_round_tokens_ = produced;
    } else {
      decode_seconds_ = seconds_since(first_token_);
    }
    finish_ = stop_.check(ids_, produced, stop_.max_time ? seconds_since(start_) : 0.0);
    emit(token);
    return finish_ != FinishReason::None;
  }

  // The ids [1, T + i]: everything produced so far, then the first i candidates.
  mx::array ids_with(const std::vector<mx::array>& candidates, int i) const {
    auto base = ids_array(ids_);
    if (i == 0) return base;
    std::vector<mx::array> parts = {base};
    for (int j = 0; j < i; ++j) parts.push_back(mx::reshape(candidates[j], {1, 1}));
    return mx::concatenate(parts, 1);
  }

  // One round: draft up to k_max candidates, verify, emit. True when generation ends.
  bool round(int k_max, const std::function<void(int)>& emit) {
    speculative::Proposal proposal = candidates_->propose(ids_, k_max);
    const std::vector<mx::array>& cands = proposal.tokens;
    const std::vector<mx::array>& draft_scores = proposal.scores;
    const int k = static_cast<int>(cands.size());

    // Verification: [last produced token, candidates] through the target, logits at all k + 1 positions.
    std::vector<mx::array> inputs = {mx::array(&ids_.back(), {1}, mx::int32)};
    inputs.insert(inputs.end(), cands.begin(), cands.end());
    auto seq = mx::reshape(mx::concatenate(inputs, 0), {1, k + 1});
    auto raw = target_.forward_last(seq, caches_, k + 1);
    raw = mx::reshape(raw, {k + 1, raw.shape(-1)});
    if (raw.dtype() != mx::float32) raw = mx::astype(raw, mx::float32);
    target_track_.begin();
    mx::array scores = raw;
    if (!target_track_.empty()) {
      std::vector<mx::array> rows_out;
      for (int i = 0; i <= k; ++i) {
        rows_out.push_back(
            target_track_.apply(rows(raw, i, i + 1), target_track_.needs_ids() ? ids_with(cands, i) : mx::array(0)));
        if (i < k) target_track_.push(cands[i]);
      }
      scores = mx::concatenate(rows_out, 0);
    }
    mx::array cand_arr = k ? mx::concatenate(cands, 0) : mx::zeros({0}, mx::int32);
    speculative::Verdict verdict =
        rejection_ ? speculative::rejection_sample(cand_arr, scores, k ? mx::concatenate(draft_scores, 0) : scores,
                                                   sampler_.next_key())
                   : speculative::match_candidates(cand_arr, sampler_.choose(scores));
    // Rows of the target's logits no sampler can use (logits_guard.h), read for the emitted ones only:
    // plain decoding never sees the rows after the first rejected candidate.
    const bool guard = guards_logits(config_);
    mx::array bad_rows = guard ? invalid_rows(raw) : mx::array(false);
    // Processed rows left without a token (every one masked: a constraint that no token satisfies beside
    // min_new_tokens, say), or sampled ones torch.multinomial would refuse: plain decoding refuses such a
    // step before taking its token (DecodeGroup::choose), where argmax would give token 0.
    const bool check_scores = !target_track_.empty() || rejection_;
    mx::array bad_scores = check_scores ? invalid_rows(scores) : mx::array(false);
    mx::eval({cand_arr, verdict.accepted, verdict.tokens, bad_rows, bad_scores});  // the round's one host sync
    const int accepted = verdict.accepted.item<int32_t>();
    for (int i = 0; i <= accepted; ++i) {
      const int step = static_cast<int>(generated_.size()) + i + 1;
      if (guard && bad_rows.data<bool>()[i]) fail_invalid_logits(step);
      if (check_scores && bad_scores.data<bool>()[i]) {
        target_track_.raise_pending();  // the constraint's own reason first
        fail_invalid_scores(step);
      }
    }
    const int32_t* toks = verdict.tokens.data<int32_t>();
    const int32_t* cs = k ? cand_arr.data<int32_t>() : nullptr;
    const int final_token = toks[accepted];

    ++stats_.target_forwards;
    stats_.drafted_tokens += k;
    stats_.accepted_tokens += accepted;

    // Emit the accepted candidates and the target's token, stopping exactly where plain decoding would.
    for (int i = 0; i <= accepted; ++i) {
      const int token = i < accepted ? cs[i] : final_token;
      if (recorder_.any())
        recorder_.record(rows(raw, i, i + 1), rows(scores, i, i + 1), mx::array(&token, {1}, mx::int32));
      ++stats_.emitted_tokens;
      if (produce(token, emit)) return true;
    }

    // Roll back: the target cache holds [.., last, c_0 .. c_{k-1}] and keeps c_0 .. c_{accepted-1}.
    speculative::rollback(caches_, k - accepted, "target");
    // Quantized when the kept positions reach quantized_kv_start, as plain decoding's caches are after the
    // forward that ends there. mlx-lm quantizes right after the verification forward, whose rejected
    // candidates can pass the start early: the next round then read a quantized cache where plain decoding
    // reads a standard one.
    maybe_quantize_kv_caches(caches_, cache_opts_);
    auto final_arr = mx::array(&final_token, {1}, mx::int32);
    target_track_.commit(accepted, final_arr);
    candidates_->update(cs, k, accepted, final_token);
    return false;
  }

  Model& target_;
  GenerationConfig config_;
  CacheOptions cache_opts_;
  ProcessorTrack target_track_;
  std::unique_ptr<speculative::CandidateGenerator> candidates_;
  StoppingCriteria stop_;
  Sampler sampler_;
  StepRecorder recorder_;
  int chunk_;
  int kv_step_;
  bool memory_trace_ = false;
  bool rejection_ = false;
  int k_ = 0;
  KVCacheList caches_;
  std::vector<int> ids_;  // prompt + produced
  std::vector<int> generated_;
  FinishReason finish_ = FinishReason::None;
  SpeculativeStats stats_;
  std::chrono::steady_clock::time_point start_, first_token_;
  double prefill_seconds_ = 0, decode_seconds_ = 0;
  int first_round_tokens_ = 0;
};

SpeculativeRun::SpeculativeRun(Model& target, std::shared_ptr<Model> draft, const GenerationConfig& config,
                               const GeneratorOptions& options)
    : impl_(std::make_unique<Impl>(target, std::move(draft), config, options)) {}

SpeculativeRun::~SpeculativeRun() = default;

void SpeculativeRun::check(const std::vector<int>& prompt) { impl_->check(prompt); }

void SpeculativeRun::start(const std::vector<int>& prompt) { impl_->start(prompt); }

bool SpeculativeRun::next_round(const std::function<void(int)>& emit) { return impl_->next_round(emit); }

void SpeculativeRun::cancel() { impl_->cancel(); }

const std::vector<int>& SpeculativeRun::generated() const { return impl_->generated(); }

FinishReason SpeculativeRun::finish_reason() const { return impl_->finish_reason(); }

std::shared_ptr<Model> resolve_draft(Model& model, const GenerationConfig& config, const GeneratorOptions& options,
                                     std::shared_ptr<Model> draft) {
  if (!config.use_speculative && !config.prompt_lookup_num_tokens)
    fail("config", "speculative decoding needs use_speculative or prompt_lookup_num_tokens");
  if (options.prefill_chunk_size < 1) fail("generate", "prefill_chunk_size must be >= 1");
  // Classifier-free guidance runs its own unconditional forward of the target inside the processor; it
  // would have to be rolled back and run for the draft too. Refused rather than approximated.
  if ((config.guidance_scale && *config.guidance_scale != 1.0) || options.negative_prompt_ids)
    fail("config", "guidance_scale / negative prompts cannot be combined with speculative or prompt-lookup decoding");
  if (!config.use_speculative) return nullptr;  // prompt lookup has no draft model
  if (!draft)
    draft = config.draft_layers  ? make_self_draft(model, *config.draft_layers)
            : config.draft_model ? load_draft(*config.draft_model, model)
                                 : nullptr;
  if (!draft) fail("config", "use_speculative needs draft_model or draft_layers");
  check_draft_vocab(*draft, model);
  return draft;
}

GenerationResult result_of(const SpeculativeRun& run_, const std::vector<int>& prompt_ids, TextStreams& texts) {
  const SpeculativeRun::Impl& run = *run_.impl_;
  GenerationResult result;
  result.prompt_token_ids = prompt_ids;
  GeneratedSequence seq;
  seq.token_ids = run.generated();
  seq.text = std::move(texts.text(0));
  seq.finish_reason = run.finish_reason();
  run.recorder().fill(seq, 0);
  const int total = static_cast<int>(seq.token_ids.size());
  result.sequences.push_back(std::move(seq));
  auto& s = result.stats;
  s.prompt_tokens = static_cast<int>(prompt_ids.size());
  s.generated_tokens = total;
  if (run.prefill_seconds() > 0) s.prefill_tokens_per_s = s.prompt_tokens / run.prefill_seconds();
  // The first round's tokens arrive with the prompt's last position (time to first token); decode speed
  // counts the tokens of the later rounds over their time.
  const int decoded = total - run.first_round_tokens();
  if (decoded > 0 && run.decode_seconds() > 0) s.decode_tokens_per_s = decoded / run.decode_seconds();
  s.peak_memory_bytes = mx::get_peak_memory();
  s.speculative = run.stats();
  return result;
}

}  // namespace mlxgp::speculative
