#include "mlxgp/batch_cache.h"

#include <algorithm>
#include <string>

#include <mlx/mlx.h>

#include "mlxgp/error.h"

namespace mlxgp {

namespace {

StandardKVCache& standard(KVCache& c) {
  auto* s = dynamic_cast<StandardKVCache*>(&c);
  // Rotating and quantized caches keep no per-row padding: their rows cannot be aligned.
  if (!s) fail("cache", "rows of different lengths can only share standard KV caches (not max_kv_size or kv_bits)");
  return *s;
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
  for (size_t i = 0; i < caches.size(); ++i) standard(*caches[i]).append_rows(standard(*more[i]));
}

void keep_rows(KVCacheList& caches, const std::vector<int>& rows) {
  if (rows.empty()) fail("cache", "keep_rows needs at least one row");
  mx::array idx(rows.data(), {static_cast<int>(rows.size())}, mx::int32);
  for (auto& c : caches) c->select(idx);
  if (caches.empty() || caches[0]->left_padding().empty()) return;
  const auto& pad = caches[0]->left_padding();
  const int shared = *std::min_element(pad.begin(), pad.end());
  for (auto& c : caches) standard(*c).drop_leading(shared);
}

}  // namespace mlxgp
