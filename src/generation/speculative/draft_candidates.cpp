// Draft-model candidates: k single-token draft forwards chained lazily (one graph with the target's
// verification), the draft's KV cache rolled back to what the target kept.
#include <algorithm>

#include <mlx/mlx.h>

#include "cache/prefill.h"
#include "generation/speculative/candidates.h"
#include "generation/speculative/processor_track.h"
#include "mlxgp/error.h"
#include "mlxgp/recurrent_cache.h"

namespace mx = mlx::core;

namespace mlxgp::speculative {

namespace {

mx::array ids_array(const std::vector<int>& ids) {
  return mx::array(ids.data(), {1, static_cast<int>(ids.size())}, mx::int32);
}

class DraftCandidates : public CandidateGenerator {
 public:
  DraftCandidates(std::shared_ptr<Model> draft, const GenerationConfig& config, const GeneratorOptions& options,
                  std::function<mx::array(const mx::array&)> choose)
      : draft_(std::move(draft)),
        cache_(cache_options_from(config)),
        track_(build_logits_processors(config, speculative_context(options))),
        choose_(std::move(choose)),
        k_(config.num_draft_tokens),
        chunk_(options.prefill_chunk_size),
        kv_step_(options.kv_prefill_step_size) {}

  void start(const std::vector<int>& prompt) override {
    const int n = static_cast<int>(prompt.size());
    auto ids = ids_array(prompt);
    caches_ = make_caches(*draft_, cache_);
    if (has_recurrent_state(caches_))
      fail("generate", "speculative decoding rolls the draft model back past rejected candidates, which " +
                           draft_->config().model_type + "'s recurrent layers (" +
                           recurrent_layer_kind(draft_->config()) + ") cannot");
    // As the target's (speculative_run.cpp): prompt[:-1] fills the caches, quantized where plain decoding's are.
    if (n > 1) prefill_prefix(*draft_, caches_, mx::slice(ids, {0, 0}, {1, n - 1}), 0, {cache_, chunk_, kv_step_});
    track_.on_prompt(ids);
    tail_ = {prompt.back()};
  }

  Proposal propose(const std::vector<int>& ids, int k) override {
    Proposal p;
    track_.begin();
    k = std::min(k, k_);  // mlx-lm drafts min(num_draft_tokens, tokens left)
    mx::array input = ids_array(tail_);
    for (int i = 0; i < k; ++i) {
      auto logits = forward_and_quantize(*draft_, caches_, input, 1, cache_);
      logits = mx::reshape(logits, {1, logits.shape(-1)});
      auto s = track_.apply(logits, track_.needs_ids() ? with_candidates(ids, p.tokens) : mx::array(0));
      auto c = choose_(s);
      track_.push(c);
      p.tokens.push_back(c);
      p.scores.push_back(s);
      input = mx::reshape(c, {1, 1});
    }
    return p;
  }

  void update(const int32_t* cs, int k, int accepted, int final_token) override {
    // The draft fed its tail and c_0 .. c_{k-2}. Keep the accepted ones; an accepted c_{k-1} was never
    // fed, so it leads the next tail (mlx-lm's _rewind_cache / draft_y).
    if (k > 0) {
      rollback(caches_, std::max(k - 1 - accepted, 0), "draft");
      tail_ = accepted == k ? std::vector<int>{cs[k - 1], final_token} : std::vector<int>{final_token};
    } else {
      tail_.push_back(final_token);  // nothing drafted this round: the draft catches up later
    }
    track_.commit(accepted, mx::array(&final_token, {1}, mx::int32));
  }

 private:
  // The ids [1, T + i]: everything produced so far, then the candidates drafted so far.
  static mx::array with_candidates(const std::vector<int>& ids, const std::vector<mx::array>& cands) {
    std::vector<mx::array> parts = {ids_array(ids)};
    for (auto& c : cands) parts.push_back(mx::reshape(c, {1, 1}));
    return parts.size() == 1 ? parts[0] : mx::concatenate(parts, 1);
  }

  std::shared_ptr<Model> draft_;
  CacheOptions cache_;
  ProcessorTrack track_;
  std::function<mx::array(const mx::array&)> choose_;
  int k_, chunk_, kv_step_;
  KVCacheList caches_;
  std::vector<int> tail_;  // produced tokens the draft has not fed yet
};

}  // namespace

std::unique_ptr<CandidateGenerator> make_draft_candidates(std::shared_ptr<Model> draft, const GenerationConfig& config,
                                                          const GeneratorOptions& options,
                                                          std::function<mx::array(const mx::array&)> choose) {
  return std::make_unique<DraftCandidates>(std::move(draft), config, options, std::move(choose));
}

ProcessorContext speculative_context(const GeneratorOptions& o) {
  ProcessorContext c;
  c.prefix_allowed_tokens_fn = o.prefix_allowed_tokens_fn;
  c.logits_processors = o.logits_processors;
  c.tokenizer = o.tokenizer;  // structured output (its vocabulary width follows the logits)
  c.tentative_ids = true;
  return c;
}

void rollback(KVCacheList& caches, int n, const char* which) {
  if (n <= 0) return;
  for (auto& c : caches)
    if (!c->is_trimmable() || c->trim(n) != n)
      fail("generate", std::string("speculative decoding: the ") + which +
                           " KV cache cannot roll back rejected candidates (a rotating cache that has wrapped)");
}

}  // namespace mlxgp::speculative
