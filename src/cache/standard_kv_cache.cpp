// StandardKVCache: one preallocated buffer per keys/values that grows by `step` positions, written
// with slice_update, so a decode step never concatenates (mlx-lm KVCache semantics).
#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/kv_cache.h"

namespace mlxgp {

namespace {

// Grows `buf` (holding `used` valid positions on axis 2) so it has room for `needed` positions.
mx::array grow(const std::shared_ptr<mx::array>& buf, int used, int needed, int step, const mx::array& like) {
  int cap_steps = (needed + step - 1) / step;
  mx::Shape shape = like.shape();
  shape[2] = cap_steps * step;
  if (!buf) return mx::zeros(shape, like.dtype());
  // Keep only the valid prefix (a trim may have left stale positions), then pad with zeros once.
  mx::Shape stop = buf->shape();
  stop[2] = used;
  auto valid = mx::slice(*buf, {0, 0, 0, 0}, stop);
  mx::Shape extra = shape;
  extra[2] = shape[2] - used;
  return mx::concatenate({valid, mx::zeros(extra, buf->dtype())}, 2);
}

}  // namespace

std::pair<mx::array, mx::array> StandardKVCache::update(const mx::array& keys, const mx::array& values) {
  if (keys.ndim() != 4 || values.ndim() != 4 || keys.shape(2) != values.shape(2))
    fail("cache", "keys/values must be [B, heads, T, head_dim] with the same T");
  if (step_ <= 0) fail("cache", "cache step must be positive");
  int t = keys.shape(2);
  int prev = offset_;
  if (keys_ && (keys_->shape(0) != keys.shape(0) || keys_->shape(1) != keys.shape(1) ||
                keys_->shape(3) != keys.shape(3) || values_->shape(3) != values.shape(3)))
    fail("cache", "keys/values shape does not match the cached entries");
  if (!keys_ || prev + t > keys_->shape(2)) {
    keys_ = std::make_shared<mx::array>(grow(keys_, prev, prev + t, step_, keys));
    values_ = std::make_shared<mx::array>(grow(values_, prev, prev + t, step_, values));
  }
  offset_ = prev + t;
  auto kshape = keys_->shape();
  auto vshape = values_->shape();
  *keys_ = mx::slice_update(*keys_, mx::astype(keys, keys_->dtype()), mx::Shape{0, 0, prev, 0},
                            mx::Shape{kshape[0], kshape[1], offset_, kshape[3]});
  *values_ = mx::slice_update(*values_, mx::astype(values, values_->dtype()), mx::Shape{0, 0, prev, 0},
                              mx::Shape{vshape[0], vshape[1], offset_, vshape[3]});
  return {mx::slice(*keys_, {0, 0, 0, 0}, {kshape[0], kshape[1], offset_, kshape[3]}),
          mx::slice(*values_, {0, 0, 0, 0}, {vshape[0], vshape[1], offset_, vshape[3]})};
}

int StandardKVCache::trim(int n) {
  if (n < 0) fail("cache", "cannot trim a negative number of positions");
  int dropped = std::min(n, offset_);
  offset_ -= dropped;
  return dropped;
}

void KVCache::select(const mx::array&) { fail("cache", "this KV cache cannot select batch rows"); }

AttentionMask KVCache::make_mask(int n) const {
  return {n > 1 ? AttentionMask::Kind::Causal : AttentionMask::Kind::None, std::nullopt};
}

std::optional<std::pair<mx::array, mx::array>> StandardKVCache::fetch() const {
  if (!keys_) return std::nullopt;
  auto ks = keys_->shape(), vs = values_->shape();
  ks[2] = vs[2] = offset_;
  return std::make_pair(mx::slice(*keys_, {0, 0, 0, 0}, ks), mx::slice(*values_, {0, 0, 0, 0}, vs));
}

void StandardKVCache::select(const mx::array& batch_indices) {
  if (batch_indices.ndim() != 1 || batch_indices.size() == 0)
    fail("cache", "batch indices must be a non-empty 1-D array");
  if (!mx::issubdtype(batch_indices.dtype(), mx::integer)) fail("cache", "batch indices must be integers");
  if (!keys_) return;  // nothing stored yet: the first update() sets the batch size
  // Gathering the whole buffer (capacity included) keeps its growth step; MLX's take is lazy, and
  // out-of-range indices are the caller's bug (they are not checked here: that would need a host sync).
  auto idx = mx::astype(batch_indices, mx::int32);
  *keys_ = mx::take(*keys_, idx, 0);
  *values_ = mx::take(*values_, idx, 0);
}

std::unique_ptr<KVCache> StandardKVCache::clone() const {
  // MLX arrays are immutable values; sharing the buffers is safe because update() rebinds them.
  auto c = std::make_unique<StandardKVCache>(step_);
  c->offset_ = offset_;
  if (keys_) {
    c->keys_ = std::make_shared<mx::array>(*keys_);
    c->values_ = std::make_shared<mx::array>(*values_);
  }
  return c;
}

}  // namespace mlxgp
