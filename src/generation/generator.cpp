// The step-wise Generator: chunked prefill, then one KV-cached forward per token, pipelined with
// mx::async_eval so token n+1's graph is queued before token n is read (mlx-lm generate_step).
#include "mlxgp/generate.h"

#include <algorithm>
#include <random>
#include <span>

#include <mlx/mlx.h>

#include "generation/core/decode_group.h"
#include "cache/prefill.h"
#include "mlxgp/error.h"
#include "mlxgp/prompt_cache.h"
#include "mlxgp/quantized_kv_cache.h"

namespace mx = mlx::core;

namespace mlxgp {

Generator::Generator(Model& model, GenerationConfig config, GeneratorOptions options)
    : model_(model), config_(std::move(config)), options_(std::move(options)) {
  validate(config_);
  cache_options_ = cache_options_from(config_);
  validate(cache_options_);  // throws [cache]
  if (options_.prefill_chunk_size < 1) fail("generate", "prefill_chunk_size must be >= 1");
  if (options_.kv_prefill_step_size < 1) fail("generate", "kv_prefill_step_size must be >= 1");
  if (options_.prompt_cache) {
    check_prompt_cache_use(*options_.prompt_cache, model_);
    check_prompt_cache_options(*options_.prompt_cache, cache_options_);
  }
  group_ = std::make_unique<DecodeGroup>(model_, config_, options_);
  batch_ = group_->rows();
}

Generator::~Generator() {
  // A step queued ahead may still be running on MLX's stream: wait for it before its arrays go.
  if (pending_) mx::synchronize();
}

bool Generator::done() const { return group_->done(); }
FinishReason Generator::finish_reason(int row) const { return group_->finish_reason(row); }
const std::vector<int>& Generator::prompt() const { return group_->prompt(); }
const std::vector<int>& Generator::generated(int row) const { return group_->generated(row); }
int Generator::token_budget() const { return group_->budget(); }
double Generator::prefill_seconds() const { return group_->prefill_seconds(); }
double Generator::decode_seconds() const { return group_->decode_seconds(); }
std::optional<mx::array> Generator::scores(int row) const { return group_->scores(row); }
std::optional<mx::array> Generator::logits(int row) const { return group_->logits(row); }
std::vector<float> Generator::logprobs(int row) const { return group_->logprobs(row); }

mx::array Generator::forward_token(const mx::array& tokens) {
  auto logits = forward_and_quantize(model_, caches_, mx::reshape(tokens, {batch_, 1}), 1, cache_options_);
  return group_->choose(mx::reshape(logits, {batch_, logits.shape(-1)}));
}

void Generator::queue(const mx::array& tokens) {
  // The requested outputs belong to the same graph: evaluating them together costs no extra sync.
  std::vector<mx::array> outs = group_->outputs();
  outs.insert(outs.begin(), tokens);
  mx::async_eval(std::move(outs));
}

void Generator::prefill(const std::vector<int>& prompt_ids) {
  if (!options_.prompt_cache) return prefill(prompt_ids, {});
  check_prompt_prefix(*options_.prompt_cache, prompt_ids);  // throws [prompt-cache]
  prefill(prompt_ids, clone_caches(*options_.prompt_cache));
}

void Generator::prefill(const std::vector<int>& prompt_ids, KVCacheList caches) {
  if (pending_ || group_->steps() > 0 || !caches_.empty())
    fail("generate", "prefill() was already called on this generator");
  group_->start(prompt_ids);  // checks the prompt, sets the budget
  const int n = static_cast<int>(prompt_ids.size());
  // Hooks that act on prompt or generated positions only (ResidualInjectionHook) split here.
  model_.hooks().set_prompt_length(n);
  const int pos = start_caches(model_, caches_, std::move(caches), n, cache_options_);
  mx::array ids(prompt_ids.data(), {1, n}, mx::int32);
  auto last = prefill_tokens(model_, caches_, ids, pos,
                             {cache_options_, options_.prefill_chunk_size, options_.kv_prefill_step_size});
  if (batch_ > 1) {
    // Several sequences share the prompt: tile its caches and logits instead of prefilling N rows.
    auto zeros = mx::zeros({batch_}, mx::int32);
    for (auto& c : caches_) c->select(zeros);
    last = mx::repeat(last, batch_, 0);
  }
  pending_ = group_->choose(last);
  queue(*pending_);
}

int Generator::step() {
  if (batch_ != 1) fail("generate", "step() returns one token: use step_batch() with num_return_sequences > 1");
  return step_batch()[0];
}

const std::vector<int>& Generator::step_batch() {
  if (!pending_) fail("generate", done() ? "generation is finished" : "step() called before prefill()");
  mx::array current = *pending_;
  pending_.reset();
  const int produced = group_->steps() + 1;
  // Queue the following step before reading this token, unless this token is certainly the last.
  if (produced < group_->budget()) {
    pending_ = forward_token(current);
    queue(*pending_);
  }
  mx::eval(current);  // the one host sync per step
  const std::vector<int>& out = group_->accept(current.data<int32_t>());
  for (int at : options_.memory_trace_at)
    if (at == produced) memory_trace_.push_back({produced, mx::get_peak_memory(), mx::get_active_memory()});
  if (done() && pending_) {  // the extra step queued ahead (and its outputs): let it finish, then drop it
    mx::synchronize();
    pending_.reset();
  }
  return out;
}

}  // namespace mlxgp
