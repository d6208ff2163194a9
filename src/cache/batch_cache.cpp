#include "mlxgp/batch_cache.h"

#include <algorithm>
#include <string>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/quantized_kv_cache.h"

namespace mlxgp {

namespace {

// Standard and quantized caches keep rows in temporal order with per-row padding; a rotating cache's
// rows cannot be aligned once it wraps.
void append_one(KVCache& to, const KVCache& from) {
  if (auto* s = dynamic_cast<StandardKVCache*>(&to))
    if (auto* o = dynamic_cast<const StandardKVCache*>(&from)) return s->append_rows(*o);
  if (auto* q = dynamic_cast<QuantizedKVCache*>(&to))
    if (auto* o = dynamic_cast<const QuantizedKVCache*>(&from)) return q->append_rows(*o);
  fail("cache", "rows of different lengths can only share standard or quantized KV caches of one kind (not "
                "max_kv_size)");
}

void drop_one(KVCache& c, int n) {
  if (auto* s = dynamic_cast<StandardKVCache*>(&c)) return s->drop_leading(n);
  if (auto* q = dynamic_cast<QuantizedKVCache*>(&c)) return q->drop_leading(n);
  fail("cache", "only standard or quantized KV caches drop padding");
}

}  // namespace

void append_rows(KVCacheList& caches, KVCacheList more) {
  if (caches.empty()) {
    caches = std::move(more);
    return;
  }
  if (caches.size() != more.size())
    fail("cache", "cannot append rows: " + std::to_string(more.size()) + " layers against " +
                      std::to_string(caches.size()));
  for (size_t i = 0; i < caches.size(); ++i) append_one(*caches[i], *more[i]);
}

void keep_rows(KVCacheList& caches, const std::vector<int>& rows) {
  if (rows.empty()) fail("cache", "keep_rows needs at least one row");
  mx::array idx(rows.data(), {static_cast<int>(rows.size())}, mx::int32);
  for (auto& c : caches) c->select(idx);
  if (caches.empty() || caches[0]->left_padding().empty()) return;
  const auto& pad = caches[0]->left_padding();
  const int shared = *std::min_element(pad.begin(), pad.end());
  for (auto& c : caches) drop_one(*c, shared);
}

}  // namespace mlxgp
