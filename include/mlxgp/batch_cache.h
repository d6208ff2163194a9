// Rows that join and leave a running batch's KV caches (mlx-lm BatchKVCache.extend / filter): a joining
// request's caches are appended aligned on the right, the shorter side getting left padding; leaving
// rows are dropped and the padding every remaining row shares is cut off.
#pragma once

#include <vector>

#include "mlxgp/kv_cache.h"

namespace mlxgp {

// Appends the rows of `more` (one cache per layer, as `caches`) after the rows of `caches`. An empty
// `caches` list takes `more` as it is. Throws [cache] unless both are standard caches, both quantized
// alike, or both rotating alike (their rows then share a BatchRotatingKVCache, which only decodes).
// reserve_rows: the most rows the batch will hold; standard caches then keep room for joining rows
// (StandardKVCache::append_rows), so a join writes its own rows only.
void append_rows(KVCacheList& caches, KVCacheList more, int reserve_rows = 0);
// Keeps the rows `rows` (in that order; not empty) and drops the leading positions that are padding in
// every kept row (standard caches: once they are a quarter of the positions, StandardKVCache::keep_rows).
void keep_rows(KVCacheList& caches, const std::vector<int>& rows);

}  // namespace mlxgp
