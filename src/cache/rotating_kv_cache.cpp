// RotatingKVCache, following mlx-lm 0.32's RotatingKVCache step for step (same buffer layout, same
// trim points, same masks), so attention sees the same keys in the same order and the logits match.
#include "mlxgp/rotating_kv_cache.h"

#include <mlx/mlx.h>

#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

mx::array range2(const mx::array& v, int from, int to) {
  auto start = mx::Shape{0, 0, from, 0};
  auto stop = v.shape();
  stop[2] = to;
  return mx::slice(v, start, stop);
}

void check_kv(const mx::array& keys, const mx::array& values) {
  if (keys.ndim() != 4 || values.ndim() != 4 || keys.shape(2) != values.shape(2) || keys.shape(2) == 0 ||
      keys.shape(0) != values.shape(0) || keys.shape(1) != values.shape(1))
    fail("cache", "keys/values must be [B, heads, T >= 1, head_dim] with the same B, heads and T");
}

}  // namespace

RotatingKVCache::RotatingKVCache(int max_size, int keep, int step) : max_size_(max_size), keep_(keep), step_(step) {
  if (max_size < 1) fail("cache", "max_kv_size must be at least 1");
  if (keep < 0 || keep >= max_size)
    fail("cache", "kv keep must be in [0, max_kv_size) (got keep " + std::to_string(keep) + ", max_kv_size " +
                      std::to_string(max_size) + ")");
  if (step < 1) fail("cache", "cache step must be positive");
}

std::pair<mx::array, mx::array> RotatingKVCache::update(const mx::array& keys, const mx::array& values) {
  check_kv(keys, values);
  if (keys_ && (keys_->shape(0) != keys.shape(0) || keys_->shape(1) != keys.shape(1) ||
                keys_->shape(3) != keys.shape(3) || values_->shape(3) != values.shape(3)))
    fail("cache", "keys/values shape does not match the cached entries");
  // mlx-lm: one token goes into the ring in place; a chunk is concatenated.
  return keys.shape(2) == 1 ? update_in_place(keys, values) : update_concat(keys, values);
}

mx::array RotatingKVCache::trim_front(int trim_size, const mx::array& v, const std::optional<mx::array>& append) const {
  // Drops `trim_size` positions right after the `keep` ones (the oldest non-kept), then appends.
  std::vector<mx::array> parts;
  if (trim_size > 0) {
    parts.push_back(range2(v, 0, keep_));
    parts.push_back(range2(v, trim_size + keep_, v.shape(2)));
  } else {
    parts.push_back(v);
  }
  if (append) parts.push_back(mx::astype(*append, v.dtype()));
  return parts.size() == 1 ? parts[0] : mx::concatenate(parts, 2);
}

mx::array RotatingKVCache::temporal_order(const mx::array& v) const {
  const int len = v.shape(2);
  if (idx_ == len) return v;
  if (idx_ < offset_)  // the ring has wrapped: [kept | oldest .. end | keep .. newest]
    return mx::concatenate({range2(v, 0, keep_), range2(v, idx_, len), range2(v, keep_, idx_)}, 2);
  return range2(v, 0, idx_);
}

std::pair<mx::array, mx::array> RotatingKVCache::update_concat(const mx::array& keys, const mx::array& values) {
  if (!keys_) {
    keys_ = std::make_shared<mx::array>(keys);
    values_ = std::make_shared<mx::array>(values);
  } else {
    auto k = temporal_order(*keys_), v = temporal_order(*values_);
    idx_ = k.shape(2);
    // Keep max_size - 1 old positions so each new query still sees max_size keys (mlx-lm).
    const int trim_size = idx_ - max_size_ + 1;
    keys_ = std::make_shared<mx::array>(trim_front(trim_size, k, keys));
    values_ = std::make_shared<mx::array>(trim_front(trim_size, v, values));
  }
  offset_ += keys.shape(2);
  idx_ = keys_->shape(2);
  return {*keys_, *values_};
}

std::pair<mx::array, mx::array> RotatingKVCache::update_in_place(const mx::array& keys, const mx::array& values) {
  const int S = keys.shape(2);
  const int prev = offset_;
  if (!keys_ || (prev >= keys_->shape(2) && keys_->shape(2) < max_size_)) {
    // Still growing towards max_size, one step at a time.
    const int new_size = std::min(step_, max_size_ - prev);
    auto ks = keys.shape(), vs = values.shape();
    ks[2] = vs[2] = new_size;
    auto nk = mx::zeros(ks, keys.dtype()), nv = mx::zeros(vs, values.dtype());
    if (keys_) {
      keys_ = std::make_shared<mx::array>(mx::concatenate({*keys_, mx::astype(nk, keys_->dtype())}, 2));
      values_ = std::make_shared<mx::array>(mx::concatenate({*values_, mx::astype(nv, values_->dtype())}, 2));
    } else {
      keys_ = std::make_shared<mx::array>(nk);
      values_ = std::make_shared<mx::array>(nv);
    }
    idx_ = prev;
  }
  // A chunk left the buffer longer than max_size: drop the oldest non-kept positions.
  const int trim_size = keys_->shape(2) - max_size_;
  if (trim_size > 0) {
    *keys_ = trim_front(trim_size, *keys_, std::nullopt);
    *values_ = trim_front(trim_size, *values_, std::nullopt);
    idx_ = max_size_;
  }
  if (idx_ == max_size_) idx_ = keep_;  // wrap around, past the kept positions
  auto kstop = keys_->shape(), vstop = values_->shape();
  kstop[2] = vstop[2] = idx_ + S;
  *keys_ = mx::slice_update(*keys_, mx::astype(keys, keys_->dtype()), mx::Shape{0, 0, idx_, 0}, kstop);
  *values_ = mx::slice_update(*values_, mx::astype(values, values_->dtype()), mx::Shape{0, 0, idx_, 0}, vstop);
  offset_ += S;
  idx_ += S;
  return keys_and_values();
}

std::pair<mx::array, mx::array> RotatingKVCache::keys_and_values() const {
  if (offset_ < keys_->shape(2)) return {range2(*keys_, 0, offset_), range2(*values_, 0, offset_)};
  return {*keys_, *values_};
}

std::optional<std::pair<mx::array, mx::array>> RotatingKVCache::ordered() const {
  if (!keys_) return std::nullopt;
  return std::make_pair(temporal_order(*keys_), temporal_order(*values_));
}

int RotatingKVCache::trim(int n) {
  if (n < 0) fail("cache", "cannot trim a negative number of positions");
  if (!is_trimmable()) return 0;  // entries were evicted: rolling back cannot restore them
  const int dropped = std::min(n, offset_);
  offset_ -= dropped;
  idx_ -= dropped;
  return dropped;
}

AttentionMask RotatingKVCache::make_mask(int n) const {
  if (n <= 1) return {};  // one query attends to everything held (mlx-lm: no mask without a window)
  // mlx-lm make_mask with window_size = max_size: the keys will be the (at most) max_size - 1 old
  // positions followed by the n new ones; a query may look back at most max_size - 1 positions.
  const int off = std::min(max_size_ - 1, offset_);
  if (off + n <= max_size_) return {AttentionMask::Kind::Causal, std::nullopt};
  auto rinds = mx::arange(off + n, mx::int32);
  auto linds = mx::reshape(mx::arange(off, off + n, mx::int32), {n, 1});
  rinds = mx::reshape(rinds, {1, off + n});
  auto mask = mx::logical_and(mx::greater_equal(linds, rinds),
                              mx::less(linds, mx::add(rinds, mx::array(max_size_, mx::int32))));
  return {AttentionMask::Kind::Array, mask};
}

void RotatingKVCache::select(const mx::array& batch_indices) {
  if (batch_indices.ndim() != 1 || batch_indices.size() == 0)
    fail("cache", "batch indices must be a non-empty 1-D array");
  if (!mx::issubdtype(batch_indices.dtype(), mx::integer)) fail("cache", "batch indices must be integers");
  if (!keys_) return;
  auto idx = mx::astype(batch_indices, mx::int32);  // lazy gather; ring position is per cache, not per row
  *keys_ = mx::take(*keys_, idx, 0);
  *values_ = mx::take(*values_, idx, 0);
}

std::unique_ptr<KVCache> RotatingKVCache::clone() const {
  auto c = std::make_unique<RotatingKVCache>(max_size_, keep_, step_);
  c->offset_ = offset_;
  c->idx_ = idx_;
  if (keys_) {  // arrays are immutable values: every write rebinds the pointer's target copy
    c->keys_ = std::make_shared<mx::array>(*keys_);
    c->values_ = std::make_shared<mx::array>(*values_);
  }
  return c;
}

}  // namespace mlxgp
