#include "mlxgp/cache_options.h"

#include "mlxgp/error.h"
#include "mlxgp/quantized_kv_cache.h"
#include "mlxgp/recurrent_cache.h"
#include "mlxgp/rotating_kv_cache.h"

namespace mlxgp {

std::optional<mlx::core::Dtype> kv_cache_dtype_named(const std::string& n) {
  if (n == "float16") return mlx::core::float16;
  if (n == "bfloat16") return mlx::core::bfloat16;
  if (n == "float32") return mlx::core::float32;
  return std::nullopt;
}

std::optional<mlx::core::Dtype> kv_storage_dtype(const CacheOptions& o) {
  if (!o.kv_cache_dtype) return std::nullopt;
  if (auto d = kv_cache_dtype_named(*o.kv_cache_dtype)) return d;
  fail("cache", "kv_cache_dtype must be float16, bfloat16 or float32, got '" + *o.kv_cache_dtype + "'");
}

void validate(const CacheOptions& o) {
  kv_storage_dtype(o);
  if (o.kv_cache_dtype && (o.max_kv_size || o.kv_bits))
    fail("cache", std::string("kv_cache_dtype applies to the standard cache, not to ") +
                      (o.kv_bits ? "a quantized one (kv_bits)" : "a rotating one (max_kv_size)"));
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
  KVCacheList caches = model.make_caches();
  if (!o.kv_cache_dtype && !o.max_kv_size && !(o.kv_bits && !o.quantized_kv_start)) return caches;
  // The options choose the attention layers' caches; a recurrent layer keeps its state cache.
  for (auto& c : caches) {
    if (dynamic_cast<const RecurrentCache*>(c.get())) continue;
    if (o.kv_cache_dtype) c = std::make_unique<StandardKVCache>(256, kv_storage_dtype(o));
    else if (o.max_kv_size) c = std::make_unique<RotatingKVCache>(*o.max_kv_size, o.kv_keep);
    else c = std::make_unique<QuantizedKVCache>(o.kv_group_size, *o.kv_bits);
  }
  return caches;
}

void maybe_quantize_kv_caches(KVCacheList& caches, const CacheOptions& o) {
  if (o.kv_bits && o.quantized_kv_start)
    maybe_quantize_kv_caches(caches, *o.quantized_kv_start, o.kv_group_size, *o.kv_bits);
}

}  // namespace mlxgp
