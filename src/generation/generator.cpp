// The step-wise Generator: chunked prefill, then one KV-cached forward per token, pipelined with
// mx::async_eval so token n+1's graph is queued before token n is read (mlx-lm generate_step).
#include "mlxgp/generate.h"

#include <algorithm>
#include <random>
#include <span>

#include <mlx/mlx.h>

#include "generation/prompt_budget.h"
#include "mlxgp/error.h"
#include "mlxgp/prompt_cache.h"
#include "mlxgp/quantized_kv_cache.h"

namespace mlxgp {

namespace {

uint64_t fresh_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

GenerationConfig with_model_defaults(GenerationConfig config, const ModelConfig& model_config,
                                     const Tokenizer* tokenizer) {
  if (!config.eos_token_id) {
    if (!model_config.eos_token_id.empty()) config.eos_token_id = model_config.eos_token_id;
    else if (tokenizer && tokenizer->eos_token_id()) config.eos_token_id = std::vector<int>{*tokenizer->eos_token_id()};
  }
  if (!config.bos_token_id) config.bos_token_id = model_config.bos_token_id ? model_config.bos_token_id
                                                  : tokenizer                 ? tokenizer->bos_token_id()
                                                                              : std::nullopt;
  if (!config.pad_token_id) config.pad_token_id = model_config.pad_token_id ? model_config.pad_token_id
                                                  : tokenizer                 ? tokenizer->pad_token_id()
                                                                              : std::nullopt;
  return config;
}

CacheOptions cache_options_from(const GenerationConfig& config) {
  CacheOptions o;
  o.max_kv_size = config.max_kv_size;
  o.kv_keep = config.kv_keep;
  o.kv_bits = config.kv_bits;
  o.kv_group_size = config.kv_group_size;
  o.quantized_kv_start = config.quantized_kv_start;
  return o;
}

Generator::Generator(Model& model, GenerationConfig config, GeneratorOptions options)
    : model_(model),
      config_(std::move(config)),
      options_(std::move(options)),
      key_(mx::random::key(config_.seed ? *config_.seed : fresh_seed())) {
  validate(config_);
  cache_options_ = cache_options_from(config_);
  validate(cache_options_);  // throws [cache]
  if (options_.prefill_chunk_size < 1) fail("generate", "prefill_chunk_size must be >= 1");
  if (options_.kv_prefill_step_size < 1) fail("generate", "kv_prefill_step_size must be >= 1");
  if (options_.prompt_cache && cache_options_.max_kv_size)
    fail("generate", "a prompt cache cannot be combined with max_kv_size (it holds a standard cache)");
  if (auto& neg = options_.negative_prompt_ids) {
    if (neg->empty()) fail("generate", "the negative prompt is empty");
    for (int id : *neg)
      if (id < 0 || id >= model_.config().vocab_size)
        fail("generate", "negative prompt token id " + std::to_string(id) + " is outside the vocabulary (size " +
                             std::to_string(model_.config().vocab_size) + ")");
  }
  ProcessorContext context;
  context.model = &model_;
  context.negative_prompt_ids = options_.negative_prompt_ids;
  context.logits_processors = options_.logits_processors;
  context.prefix_allowed_tokens_fn = options_.prefix_allowed_tokens_fn;
  processors_ = build_logits_processors(config_, context);
  if (config_.eos_token_id) stop_.eos = *config_.eos_token_id;
  stop_.max_time = config_.max_time;
  if (config_.stop_strings) {
    // transformers raises the same way when generate() gets stop_strings but no tokenizer.
    if (!options_.tokenizer) fail("generate", "stop_strings need the model's tokenizer");
    stop_.stop_strings.emplace(*config_.stop_strings, options_.tokenizer);
  }
  stop_.callback = options_.stop_callback;
  // HF expands the prompt to num_return_sequences rows (validate() allows > 1 only when sampling).
  batch_ = config_.num_return_sequences;
  generated_.resize(batch_);
  finish_.assign(batch_, FinishReason::None);
  last_.assign(batch_, -1);
}


mx::array Generator::next_token(const mx::array& logits) {
  mx::array raw = logits.dtype() == mx::float32 ? logits : mx::astype(logits, mx::float32);
  if (config_.output_logits) step_logits_.push_back(raw);
  mx::array scores = raw;
  if (!processors_.empty())
    scores = processors_.apply(scores, processors_.needs_ids() ? *ids_so_far_ : mx::array(0));
  if (config_.output_scores) step_scores_.push_back(scores);
  mx::array token = mx::array(0);
  if (config_.do_sample) {
    auto [next_key, sub] = mx::random::split(key_);
    key_ = next_key;
    token = mx::random::categorical(scores, -1, sub);  // one draw per row
  } else {
    token = mx::argmax(scores, -1);  // first maximal index on ties, like torch.argmax
  }
  token = mx::astype(token, mx::int32);
  if (config_.output_logprobs) {
    // log_softmax(scores)[token] = scores[token] - logsumexp(scores): compute_transition_scores with
    // normalize_logits=True, on the processed scores HF returns as `scores`.
    auto chosen = mx::take_along_axis(scores, mx::expand_dims(token, -1), -1);
    step_logprobs_.push_back(mx::squeeze(mx::subtract(chosen, mx::logsumexp(scores, -1, true)), -1));
  }
  processors_.on_token(token);
  // One two-input concat per step (not a concat of every step's token): the graph stays small.
  if (processors_.needs_ids()) ids_so_far_ = mx::concatenate({*ids_so_far_, mx::reshape(token, {batch_, 1})}, 1);
  return token;
}

mx::array Generator::forward(const mx::array& tokens, int last_n) {
  auto logits = model_.forward_last(tokens, caches_, last_n);
  // mlx-lm generate_step quantizes after each model call; the logits above already read the caches.
  maybe_quantize_kv_caches(caches_, cache_options_);
  return logits;
}

mx::array Generator::forward_token(const mx::array& tokens) {
  auto logits = forward(mx::reshape(tokens, {batch_, 1}), 1);
  return next_token(mx::reshape(logits, {batch_, logits.shape(-1)}));
}

void Generator::queue(const mx::array& tokens) {
  // The requested outputs belong to the same graph: evaluating them together costs no extra sync.
  std::vector<mx::array> outs = {tokens};
  if (config_.output_logits) outs.push_back(step_logits_.back());
  if (config_.output_scores) outs.push_back(step_scores_.back());
  if (config_.output_logprobs) outs.push_back(step_logprobs_.back());
  mx::async_eval(std::move(outs));
}

void Generator::prefill(const std::vector<int>& prompt_ids) {
  if (!options_.prompt_cache) return prefill(prompt_ids, {});
  check_prompt_prefix(*options_.prompt_cache, prompt_ids);  // throws [prompt-cache]
  prefill(prompt_ids, clone_caches(*options_.prompt_cache));
}

void Generator::prefill(const std::vector<int>& prompt_ids, KVCacheList caches) {
  if (started_) fail("generate", "prefill() was already called on this generator");
  stop_.budget = check_prompt_and_budget(model_.config(), config_, prompt_ids);
  const int n = static_cast<int>(prompt_ids.size());

  start_ = std::chrono::steady_clock::now();
  // Hooks that act on prompt or generated positions only (ResidualInjectionHook) split here.
  model_.hooks().set_prompt_length(n);
  prompt_ = prompt_ids;
  int pos = 0;  // prompt tokens already in the caches
  if (caches.empty()) {
    caches_ = make_caches(model_, cache_options_);
  } else {
    if (caches.size() != model_.make_caches().size())
      fail("generate", "the KV caches have " + std::to_string(caches.size()) + " layers, the model has " +
                           std::to_string(model_.make_caches().size()));
    pos = caches[0]->offset();
    if (pos > n)
      fail("generate", "the KV caches hold " + std::to_string(pos) + " tokens, more than the prompt (" +
                           std::to_string(n) + ")");
    if (pos == n) {  // the last prompt position's logits are needed: recompute it
      for (auto& c : caches)
        if (!c->is_trimmable() || c->trim(1) != 1) fail("generate", "the KV caches cannot be trimmed");
      pos = n - 1;
    }
    caches_ = std::move(caches);
    // kv_bits without quantized_kv_start quantizes from the first position: convert given standard
    // caches (a saved prompt cache) now, as make_caches() would have made them quantized.
    if (cache_options_.kv_bits && !cache_options_.quantized_kv_start)
      maybe_quantize_kv_caches(caches_, 0, cache_options_.kv_group_size, *cache_options_.kv_bits);
  }
  started_ = true;
  active_ = batch_;
  mx::array ids(prompt_ids.data(), {1, n}, mx::int32);
  mx::array rows = batch_ == 1 ? ids : mx::repeat(ids, batch_, 0);  // [B, n]
  processors_.on_prompt(rows);
  if (processors_.needs_ids()) ids_so_far_ = rows;
  if (stop_.needs_ids()) ids_.assign(batch_, prompt_ids);

  std::optional<mx::array> logits;
  if (cache_options_.max_kv_size || cache_options_.kv_bits) {
    // mlx-lm generate_step's prefill: prompt[:-1] in chunks of prefill_step_size (each evaluated, with
    // maybe_quantize_kv_cache after it), then the last prompt token alone. A rotating cache's contents
    // (and a quantized cache's rounding) depend on these call boundaries, so they are reproduced.
    const int step = options_.kv_prefill_step_size;
    while (n - pos > 1) {
      const int len = std::min(step, n - pos - 1);
      // Evaluating the chunk's (one-row) logits writes its keys/values into the caches, as mlx-lm's
      // mx.eval of the cache state does, so a long prompt never builds one huge graph.
      mx::eval(forward(mx::slice(ids, {0, pos}, {1, pos + len}), 1));
      pos += len;
    }
    logits = forward(mx::slice(ids, {0, pos}, {1, n}), 1);
    pos = n;
  }
  // Chunked prefill of the one prompt row: earlier chunks only fill the caches (their logits are never
  // evaluated, so the lazy graph skips their lm_head); the last chunk's final position gives the first
  // token.
  const int chunk = options_.prefill_chunk_size;
  while (pos < n) {
    int len = std::min(chunk, n - pos);
    auto part = mx::slice(ids, {0, pos}, {1, pos + len});
    // Only the last position's logits are needed: skip the lm_head over the rest of the prompt.
    logits = forward(part, 1);
    pos += len;
  }
  const int vocab = logits->shape(2);
  auto last = mx::reshape(mx::slice(*logits, {0, logits->shape(1) - 1, 0}, {1, logits->shape(1), vocab}), {1, vocab});
  if (batch_ > 1) {
    // Several sequences share the prompt: tile its caches and logits instead of prefilling N rows.
    auto zeros = mx::zeros({batch_}, mx::int32);
    for (auto& c : caches_) c->select(zeros);
    last = mx::repeat(last, batch_, 0);
  }
  pending_ = next_token(last);
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
  const int produced = steps_ + 1;
  // Queue the following step before reading this token, unless this token is certainly the last.
  if (produced < stop_.budget) {
    pending_ = forward_token(current);
    queue(*pending_);
  }
  mx::eval(current);  // the one host sync per step
  const int32_t* tokens = current.data<int32_t>();
  auto now = std::chrono::steady_clock::now();
  if (steps_ == 0) {
    first_token_ = now;
    prefill_seconds_ = std::chrono::duration<double>(now - start_).count();
  } else {
    decode_seconds_ = std::chrono::duration<double>(now - first_token_).count();
  }
  steps_ = produced;
  for (int at : options_.memory_trace_at)
    if (at == produced) memory_trace_.push_back({produced, mx::get_peak_memory(), mx::get_active_memory()});
  const double elapsed = stop_.max_time ? seconds_since(start_) : 0.0;
  for (int r = 0; r < batch_; ++r) {
    if (finish_[r] != FinishReason::None) {
      last_[r] = -1;
      continue;
    }
    const int token = tokens[r];
    last_[r] = token;
    generated_[r].push_back(token);
    std::span<const int> ids = generated_[r];
    if (!ids_.empty()) {
      ids_[r].push_back(token);
      ids = ids_[r];
    }
    finish_[r] = stop_.check(ids, produced, elapsed);
    if (finish_[r] != FinishReason::None) --active_;
  }
  if (done()) {
    pending_.reset();  // drop the speculative extra step and its outputs
    for (auto* v : {&step_logits_, &step_scores_, &step_logprobs_})
      if (static_cast<int>(v->size()) > steps_) v->resize(steps_, mx::array(0));
  }
  return last_;
}

std::optional<mx::array> Generator::row_outputs(const std::vector<mx::array>& steps, int row) const {
  const int n = static_cast<int>(generated_.at(row).size());
  if (steps.empty() || n == 0) return std::nullopt;
  std::vector<mx::array> parts(steps.begin(), steps.begin() + n);
  auto all = mx::stack(parts, 0);  // [n, B, ...]
  mx::Shape start(all.ndim(), 0), stop = all.shape();
  start[1] = row;
  stop[1] = row + 1;
  // A row is a strided view of the stack: copy it so its data is one row-major block.
  return mx::contiguous(mx::squeeze(mx::slice(all, start, stop), 1));
}

std::optional<mx::array> Generator::scores(int row) const { return row_outputs(step_scores_, row); }
std::optional<mx::array> Generator::logits(int row) const { return row_outputs(step_logits_, row); }

std::vector<float> Generator::logprobs(int row) const {
  auto a = row_outputs(step_logprobs_, row);
  if (!a) return {};
  auto f = mx::contiguous(mx::astype(*a, mx::float32));
  mx::eval(f);
  return {f.data<float>(), f.data<float>() + f.size()};
}

}  // namespace mlxgp
