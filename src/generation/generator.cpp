// The step-wise Generator: chunked prefill, then one KV-cached forward per token, pipelined with
// mx::async_eval so token n+1's graph is queued before token n is read (mlx-lm generate_step).
#include "mlxgp/generate.h"

#include <algorithm>
#include <random>

#include <mlx/mlx.h>

#include "mlxgp/error.h"

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

std::string to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::Eos: return "eos";
    case FinishReason::Length: return "length";
    case FinishReason::StopString: return "stop_string";
    case FinishReason::MaxTime: return "max_time";
    case FinishReason::None: break;
  }
  return "";
}

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

Generator::Generator(Model& model, GenerationConfig config, GeneratorOptions options)
    : model_(model),
      config_(std::move(config)),
      options_(options),
      key_(mx::random::key(config_.seed ? *config_.seed : fresh_seed())) {
  validate(config_);
  if (options_.prefill_chunk_size < 1) fail("generate", "prefill_chunk_size must be >= 1");
  processors_ = build_logits_processors(config_);
  if (config_.eos_token_id) eos_ = *config_.eos_token_id;
}

mx::array Generator::all_ids() const {
  if (history_.size() == 1) return history_[0];
  return mx::concatenate(history_, 1);
}

mx::array Generator::next_token(const mx::array& logits) {
  mx::array scores = logits.dtype() == mx::float32 ? logits : mx::astype(logits, mx::float32);
  if (!processors_.empty())
    scores = processors_.apply(scores, processors_.needs_ids() ? all_ids() : mx::array(0));
  mx::array token = mx::array(0);
  if (config_.do_sample) {
    auto [next_key, sub] = mx::random::split(key_);
    key_ = next_key;
    token = mx::random::categorical(scores, -1, sub);
  } else {
    token = mx::argmax(scores, -1);  // first maximal index on ties, like torch.argmax
  }
  token = mx::astype(token, mx::int32);
  processors_.on_token(token);
  if (processors_.needs_ids()) history_.push_back(mx::reshape(token, {1, 1}));
  return token;
}

mx::array Generator::forward_token(const mx::array& token) {
  auto logits = model_.forward(mx::reshape(token, {1, 1}), caches_);
  return next_token(mx::reshape(logits, {1, logits.shape(-1)}));
}

void Generator::prefill(const std::vector<int>& prompt_ids) { prefill(prompt_ids, {}); }

void Generator::prefill(const std::vector<int>& prompt_ids, KVCacheList caches) {
  if (!prompt_.empty() || pending_) fail("generate", "prefill() was already called on this generator");
  if (prompt_ids.empty()) fail("generate", "the prompt is empty");
  const auto& mc = model_.config();
  for (int id : prompt_ids)
    if (id < 0 || id >= mc.vocab_size)
      fail("generate", "token id " + std::to_string(id) + " is outside the vocabulary (size " +
                           std::to_string(mc.vocab_size) + ")");
  const int n = static_cast<int>(prompt_ids.size());
  const int context = mc.max_position_embeddings;
  if (context > 0 && n >= context)
    fail("generate", "prompt has " + std::to_string(n) + " tokens, longer than the model's context (" +
                         std::to_string(context) + ")");
  // HF: max_new_tokens wins; otherwise max_length counts the prompt and must exceed it.
  if (config_.max_new_tokens) {
    budget_ = *config_.max_new_tokens;
  } else {
    if (n >= config_.max_length)
      fail("generate", "prompt has " + std::to_string(n) + " tokens but max_length is " +
                           std::to_string(config_.max_length) + "; raise max_length or set max_new_tokens");
    budget_ = config_.max_length - n;
  }
  if (context > 0) budget_ = std::min(budget_, context - n);

  start_ = std::chrono::steady_clock::now();
  prompt_ = prompt_ids;
  int pos = 0;  // prompt tokens already in the caches
  if (caches.empty()) {
    caches_ = model_.make_caches();
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
  }
  mx::array ids(prompt_ids.data(), {1, n}, mx::int32);
  processors_.on_prompt(ids);
  if (processors_.needs_ids()) history_.push_back(ids);

  // Chunked prefill: earlier chunks only fill the caches (their logits are never evaluated, so the
  // lazy graph skips their lm_head); the last chunk's final position gives the first token.
  const int chunk = options_.prefill_chunk_size;
  std::optional<mx::array> logits;
  while (pos < n) {
    int len = std::min(chunk, n - pos);
    auto part = mx::slice(ids, {0, pos}, {1, pos + len});
    // Only the last position's logits are needed: skip the lm_head over the rest of the prompt.
    logits = model_.forward_last(part, caches_, 1);
    pos += len;
  }
  auto last = mx::slice(*logits, {0, logits->shape(1) - 1, 0}, {1, logits->shape(1), logits->shape(2)});
  pending_ = next_token(mx::reshape(last, {1, logits->shape(2)}));
  mx::async_eval(*pending_);
}

int Generator::step() {
  if (!pending_) fail("generate", done() ? "generation is finished" : "step() called before prefill()");
  mx::array current = *pending_;
  pending_.reset();
  const int produced = static_cast<int>(generated_.size()) + 1;
  // Queue the following step before reading this token, unless this token is certainly the last.
  if (produced < budget_) {
    pending_ = forward_token(current);
    mx::async_eval(*pending_);
  }
  const int token = current.item<int>();  // the one host sync per token
  auto now = std::chrono::steady_clock::now();
  if (generated_.empty()) {
    first_token_ = now;
    prefill_seconds_ = std::chrono::duration<double>(now - start_).count();
  } else {
    decode_seconds_ = std::chrono::duration<double>(now - first_token_).count();
  }
  generated_.push_back(token);

  if (std::find(eos_.begin(), eos_.end(), token) != eos_.end()) finish_ = FinishReason::Eos;
  else if (produced >= budget_) finish_ = FinishReason::Length;
  else if (config_.max_time && seconds_since(start_) > *config_.max_time) finish_ = FinishReason::MaxTime;
  if (done()) pending_.reset();  // drop the speculative extra step
  return token;
}

}  // namespace mlxgp
