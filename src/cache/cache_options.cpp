#include "mlxgp/cache_options.h"

#include "mlxgp/error.h"
#include "mlxgp/quantized_kv_cache.h"
#include "mlxgp/rotating_kv_cache.h"

namespace mlxgp {

void validate(const CacheOptions& o) {
  if (o.max_kv_size) {
    if (*o.max_kv_size < 1) fail("cache", "max_kv_size must be at least 1");
    if (o.kv_keep < 0 || o.kv_keep >= *o.max_kv_size) fail("cache", "kv keep must be in [0, max_kv_size)");
    if (o.kv_bits) fail("cache", "max_kv_size and kv_bits cannot be combined (a rotating cache is not quantized)");
  }
  if (o.kv_bits) QuantizedKVCache(o.kv_group_size, *o.kv_bits);  // throws [cache] for bad bits / group size
  if (o.quantized_kv_start) {
    if (!o.kv_bits) fail("cache", "quantized_kv_start needs kv_bits");
    if (*o.quantized_kv_start < 0) fail("cache", "quantized_kv_start must be >= 0");
  }
}

KVCacheList make_caches(const Model& model, const CacheOptions& o) {
  validate(o);
  if (!o.max_kv_size && !(o.kv_bits && !o.quantized_kv_start)) return model.make_caches();
  KVCacheList caches;
  for (int i = 0; i < model.config().num_hidden_layers; ++i) {
    if (o.max_kv_size) caches.push_back(std::make_unique<RotatingKVCache>(*o.max_kv_size, o.kv_keep));
    else caches.push_back(std::make_unique<QuantizedKVCache>(o.kv_group_size, *o.kv_bits));
  }
  return caches;
}

void maybe_quantize_kv_caches(KVCacheList& caches, const CacheOptions& o) {
  if (o.kv_bits && o.quantized_kv_start)
    maybe_quantize_kv_caches(caches, *o.quantized_kv_start, o.kv_group_size, *o.kv_bits);
}

}  // namespace mlxgp
