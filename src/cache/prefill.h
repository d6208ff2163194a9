// The one chunked prefill behind every decoding loop (Generator, BatchEngine, beam search, speculative
// decoding) and the saved prompt cache.
#pragma once

#include <mlx/array.h>

#include "mlxgp/cache_options.h"
#include "mlxgp/model.h"

namespace mx = mlx::core;

namespace mlxgp {

struct PrefillOptions {
  CacheOptions cache;       // the caches' kind: rotating / quantized caches prefill as mlx-lm does
  int chunk_size = 512;     // standard caches: the prompt goes in chunks of this many tokens
  int kv_step_size = 2048;  // rotating / quantized: mlx-lm generate_step's prefill_step_size
};

// Feeds positions [pos, n) of the prompt ids [1, n] into `caches` (which hold the first `pos`) and
// returns the last position's logits [1, V] (lazy). With a rotating or quantized KV cache the prompt
// goes in as mlx-lm's generate_step feeds it, since the cache contents depend on the call boundaries:
// prompt[:-1] in chunks of kv_step_size, each evaluated with maybe_quantize_kv_caches after it, then
// the last token alone. Otherwise in chunks of chunk_size, each evaluated before the next (only the last
// position's head row is computed per chunk).
mx::array prefill_tokens(Model& model, KVCacheList& caches, const mx::array& ids, int pos, const PrefillOptions& o);

// Feeds every position of ids [1, n] from `pos` into `caches` and evaluates them: the caches a loop expects
// that runs the next token itself (speculative decoding's target and draft take prompt[:-1] here, and the
// last prompt token leads their first verification). Rotating / quantized caches take the steps
// prefill_tokens gives prompt[:-1] (quantized after each), so a speculative run's cache holds exactly what
// plain decoding's holds before its last prompt token; standard caches go in prefill_tokens' chunks.
void prefill_prefix(Model& model, KVCacheList& caches, const mx::array& ids, int pos, const PrefillOptions& o);

// The caches a prompt of n tokens starts from: fresh ones of the options' kind when `given` is empty,
// else `given` (which hold the prompt's first tokens: a saved prompt cache, an earlier chat turn). When
// they hold the whole prompt, its last position is trimmed to be recomputed (its logits are needed).
// Returns how many prompt tokens the caches hold. Throws [generate] on caches that do not fit.
int start_caches(Model& model, KVCacheList& caches, KVCacheList given, int n, const CacheOptions& o);

// A forward through the caches, then mlx-lm's maybe_quantize_kv_cache (kv_bits with quantized_kv_start).
mx::array forward_and_quantize(Model& model, KVCacheList& caches, const mx::array& tokens, int last_n,
                               const CacheOptions& cache);

}  // namespace mlxgp
