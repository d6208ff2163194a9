#include "cache/prefill.h"

#include <algorithm>
#include <optional>
#include <string>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/quantized_kv_cache.h"
#include "mlxgp/recurrent_cache.h"

namespace mx = mlx::core;

namespace mlxgp {

mx::array forward_and_quantize(Model& model, KVCacheList& caches, const mx::array& tokens, int last_n,
                               const CacheOptions& cache) {
  auto logits = model.forward_last(tokens, caches, last_n);
  // mlx-lm generate_step quantizes after each model call; the logits above already read the caches.
  maybe_quantize_kv_caches(caches, cache);
  return logits;
}

int start_caches(Model& model, KVCacheList& caches, KVCacheList given, int n, const CacheOptions& o) {
  if (given.empty()) {
    caches = make_caches(model, o);
    return 0;
  }
  const size_t layers = model.make_caches().size();
  if (given.size() != layers)
    fail("generate",
         "the KV caches have " + std::to_string(given.size()) + " layers, the model has " + std::to_string(layers));
  int pos = given[0]->offset();
  if (pos > n)
    fail("generate",
         "the KV caches hold " + std::to_string(pos) + " tokens, more than the prompt (" + std::to_string(n) + ")");
  if (pos == n) {  // the last prompt position's logits are needed: recompute it
    if (has_recurrent_state(given))
      fail("generate", "the caches hold the whole prompt, and " + model.config().model_type +
                           "'s recurrent layers cannot step back to recompute its last position: the prompt must go "
                           "past the cached tokens");
    for (auto& c : given)
      if (!c->is_trimmable() || c->trim(1) != 1) fail("generate", "the KV caches cannot be trimmed");
    pos = n - 1;
  }
  caches = std::move(given);
  // kv_bits without quantized_kv_start quantizes from the first position: convert given standard
  // caches (a saved prompt cache) now, as make_caches() would have made them quantized.
  if (o.kv_bits && !o.quantized_kv_start) maybe_quantize_kv_caches(caches, 0, o.kv_group_size, *o.kv_bits);
  return pos;
}

// Rotating / quantized caches: positions [pos, end) in mlx-lm generate_step's prefill steps, each evaluated
// and quantized after it. Returns end.
static int feed_steps(Model& model, KVCacheList& caches, const mx::array& ids, int pos, int end,
                      const PrefillOptions& o) {
  while (pos < end) {
    // Steps end at multiples of the step size from position 0 whatever `pos` a cache starts at, so a
    // prompt cache's run quantizes where the run without it does (check_prompt_cache_options).
    const int len = std::min(o.kv_step_size - pos % o.kv_step_size, end - pos);
    // Evaluating the chunk writes its keys/values into the caches, as mlx-lm's mx.eval of the cache
    // state does, so a long prompt never builds one huge graph.
    mx::eval(forward_and_quantize(model, caches, mx::slice(ids, {0, pos}, {1, pos + len}), 1, o.cache));
    pos += len;
  }
  return end;
}

void prefill_prefix(Model& model, KVCacheList& caches, const mx::array& ids, int pos, const PrefillOptions& o) {
  if (o.kv_step_size < 1) fail("generate", "kv_prefill_step_size must be >= 1");
  if (o.cache.max_kv_size || o.cache.kv_bits) {
    feed_steps(model, caches, ids, pos, ids.shape(1), o);
    return;
  }
  // Evaluated: a one-token forward on filled caches writes them in place (kernels::decode_layers), so its
  // result must not be dropped unevaluated.
  mx::eval(prefill_tokens(model, caches, ids, pos, o));
}

mx::array prefill_tokens(Model& model, KVCacheList& caches, const mx::array& ids, int pos, const PrefillOptions& o) {
  if (o.chunk_size < 1) fail("generate", "prefill_chunk_size must be >= 1");
  if (o.kv_step_size < 1) fail("generate", "kv_prefill_step_size must be >= 1");
  const int n = ids.shape(1);
  if (pos >= n) fail("generate", "nothing left of the prompt to prefill");
  auto part = [&](int from, int to) { return mx::slice(ids, {0, from}, {1, to}); };
  std::optional<mx::array> logits;
  // LongRoPE (phi3) rotates a forward with its long factors when the forward reaches past
  // original_max_position_embeddings; transformers prefills the whole prompt in one forward, so a prompt
  // longer than that is long-rotated throughout. Chunks would rotate the early ones with the short factors.
  int chunk = o.chunk_size;
  const auto& rope = model.config().rope_scaling;
  if (rope && rope->rope_type == "longrope" && n > rope->original_max_position_embeddings) {
    if (o.cache.max_kv_size || o.cache.kv_bits)
      fail("generate", "a prompt longer than LongRoPE's original_max_position_embeddings (" +
                           std::to_string(rope->original_max_position_embeddings) +
                           ") is prefilled in one forward; rotating / quantized KV caches prefill in steps");
    chunk = n;
  }
  if (o.cache.max_kv_size || o.cache.kv_bits) pos = feed_steps(model, caches, ids, pos, n - 1, o);
  while (pos < n) {
    const int len = std::min(chunk, n - pos);
    // Only the last position's logits are needed: skip the lm_head over the rest of the prompt.
    logits = forward_and_quantize(model, caches, part(pos, pos + len), 1, o.cache);
    pos += len;
    // Evaluating an earlier chunk (one head row) writes its keys/values, so a long prompt never builds
    // one huge graph.
    if (pos < n) mx::eval(*logits);
  }
  return mx::reshape(*logits, {1, logits->shape(-1)});
}

}  // namespace mlxgp
