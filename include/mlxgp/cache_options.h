// Which KV cache a model gets (mlx-lm generate's max_kv_size / kv_bits / kv_group_size /
// quantized_kv_start). Defaults give today's StandardKVCache.
#pragma once

#include <optional>
#include <string>

#include "mlxgp/kv_cache.h"
#include "mlxgp/model.h"

namespace mlxgp {

struct CacheOptions {
  std::optional<int> max_kv_size;  // RotatingKVCache(max_kv_size, kv_keep)
  int kv_keep = 4;                 // mlx-lm make_prompt_cache's keep
  std::optional<int> kv_bits;      // quantized keys/values (2, 3, 4, 5, 6 or 8)
  int kv_group_size = 64;
  // With kv_bits: start with standard caches and quantize them once they hold this many positions
  // (mlx-lm's quantized_kv_start; call maybe_quantize_kv_caches after each forward, as mlx-lm's
  // generate_step does). nullopt: QuantizedKVCache from the first token.
  std::optional<int> quantized_kv_start;
  // The standard cache's storage dtype: "float16", "bfloat16" or "float32" (StandardKVCache's dtype); unset:
  // the activations'. A rotating or quantized cache has its own format: combining them is refused.
  std::optional<std::string> kv_cache_dtype;
};

// The dtype a kv_cache_dtype name stands for ("float16", "bfloat16", "float32"); nullopt for any other name.
std::optional<mlx::core::Dtype> kv_cache_dtype_named(const std::string& name);
// The options' kv_cache_dtype as a dtype (throws [cache] for an unknown name); nullopt when unset.
std::optional<mlx::core::Dtype> kv_storage_dtype(const CacheOptions& options);

// Throws [cache] on invalid values, and for max_kv_size together with kv_bits (mlx-lm cannot
// quantize a rotating cache either).
void validate(const CacheOptions& options);
// One cache per layer of `model`.
KVCacheList make_caches(const Model& model, const CacheOptions& options);
// maybe_quantize_kv_caches with the options' settings; a no-op unless kv_bits and
// quantized_kv_start are both set.
void maybe_quantize_kv_caches(KVCacheList& caches, const CacheOptions& options);

}  // namespace mlxgp
