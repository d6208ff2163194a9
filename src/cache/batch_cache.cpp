#include "mlxgp/batch_cache.h"

#include <algorithm>
#include <string>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/quantized_kv_cache.h"
#include "mlxgp/recurrent_cache.h"
#include "mlxgp/rotating_kv_cache.h"

#include "cache/batch_rotating_kv_cache.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

// Standard and quantized caches keep rows in temporal order with per-row padding; rotating caches' rows
// join a BatchRotatingKVCache (the first ones become one when the second arrive).
void append_one(std::unique_ptr<KVCache>& to, const KVCache& from, int reserve_rows) {
  if (auto* s = dynamic_cast<StandardKVCache*>(to.get()))
    if (auto* o = dynamic_cast<const StandardKVCache*>(&from)) return s->append_rows(*o, reserve_rows);
  if (auto* q = dynamic_cast<QuantizedKVCache*>(to.get()))
    if (auto* o = dynamic_cast<const QuantizedKVCache*>(&from)) return q->append_rows(*o);
  if (auto* r = dynamic_cast<RecurrentCache*>(to.get()))
    if (auto* o = dynamic_cast<const RecurrentCache*>(&from)) return r->append_rows(*o);
  if (auto* o = dynamic_cast<const RotatingKVCache*>(&from)) {
    if (auto* r = dynamic_cast<const RotatingKVCache*>(to.get())) to = std::make_unique<BatchRotatingKVCache>(*r);
    if (auto* b = dynamic_cast<BatchRotatingKVCache*>(to.get())) return b->append_rows(*o);
  }
  fail("cache",
       "rows of different lengths can only share KV caches of one kind (standard, quantized alike, or "
       "rotating alike) and recurrent layers' caches");
}

void drop_one(KVCache& c, int n) {
  if (auto* s = dynamic_cast<StandardKVCache*>(&c)) return s->drop_leading(n);
  if (auto* q = dynamic_cast<QuantizedKVCache*>(&c)) return q->drop_leading(n);
  if (auto* r = dynamic_cast<BatchRotatingKVCache*>(&c)) return r->drop_leading(n);
  if (auto* r = dynamic_cast<RecurrentCache*>(&c)) return r->drop_leading(n);
  fail("cache", "only standard, quantized, batched rotating or recurrent caches drop padding");
}

}  // namespace

void append_rows(KVCacheList& caches, KVCacheList more, int reserve_rows) {
  if (caches.empty()) {
    caches = std::move(more);
    // Room for the rows that will join (an empty standard cache takes over the first rows' buffers).
    if (reserve_rows > 0)
      for (auto& c : caches)
        if (auto* s = dynamic_cast<StandardKVCache*>(c.get()); s && s->rows() > 0) {
          auto first = std::make_unique<StandardKVCache>();
          first->append_rows(*s, reserve_rows);
          c = std::move(first);
        }
    return;
  }
  if (caches.size() != more.size())
    fail("cache",
         "cannot append rows: " + std::to_string(more.size()) + " layers against " + std::to_string(caches.size()));
  for (size_t i = 0; i < caches.size(); ++i) append_one(caches[i], *more[i], reserve_rows);
}

void keep_rows(KVCacheList& caches, const std::vector<int>& rows) {
  if (rows.empty()) fail("cache", "keep_rows needs at least one row");
  // Standard caches keep their rows in their buffers (moved, not gathered) and drop shared padding themselves.
  bool standard = true;
  for (auto& c : caches) standard = standard && dynamic_cast<StandardKVCache*>(c.get());
  if (standard) {
    for (auto& c : caches) static_cast<StandardKVCache&>(*c).keep_rows(rows);
    return;
  }
  mx::array idx(rows.data(), {static_cast<int>(rows.size())}, mx::int32);
  for (auto& c : caches) c->select(idx);
  if (caches.empty() || caches[0]->left_padding().empty()) return;
  const auto& pad = caches[0]->left_padding();
  const int shared = *std::min_element(pad.begin(), pad.end());
  for (auto& c : caches) drop_one(*c, shared);
}

}  // namespace mlxgp
