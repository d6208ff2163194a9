// StandardKVCache: one preallocated buffer per keys/values that grows by `step` positions, written
// with slice_update, so a decode step never concatenates (mlx-lm KVCache semantics).
#include <algorithm>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/kv_cache.h"

#include "cache/row_padding.h"

namespace mx = mlx::core;

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

// No padding is stored as an empty list (the unpadded fast paths check emptiness).
void clear_if_unpadded(std::vector<int>& pad) {
  if (std::all_of(pad.begin(), pad.end(), [](int p) { return p == 0; })) pad.clear();
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
  // The slice update's result is this cache's alone (MLX writes in place only into a buffer nothing else
  // holds); the views returned below are read by this step's attention, dispatched before any later write.
  exclusive_ = true;
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
  if (left_padding_.empty()) return {n > 1 ? AttentionMask::Kind::Causal : AttentionMask::Kind::None, std::nullopt};
  // Query i of row r (absolute slot offset + i) sees keys j with pad[r] <= j <= offset + i: transformers'
  // causal mask combined with the padding mask of a left-padded batch.
  const int off = offset(), s = off + n, b = static_cast<int>(left_padding_.size());
  auto pad = mx::array(left_padding_.data(), {b, 1, 1, 1}, mx::int32);
  auto k = mx::reshape(mx::arange(s, mx::int32), {1, 1, 1, s});
  auto q = mx::reshape(mx::arange(off, s, mx::int32), {1, 1, n, 1});
  AttentionMask mask{n > 1 ? AttentionMask::Kind::Causal : AttentionMask::Kind::None,
                     mx::logical_and(mx::greater_equal(k, pad), mx::less_equal(k, q)), left_padding_};
  return mask;
}

void KVCache::join_padding(const KVCache& other, int rows, int other_rows, int len) {
  std::vector<int> pad;
  auto add = [&](const KVCache& c, int n) {
    for (int r = 0; r < n; ++r) pad.push_back((c.left_padding_.empty() ? 0 : c.left_padding_[r]) + len - c.offset());
  };
  add(*this, rows);
  add(other, other_rows);
  left_padding_ = std::move(pad);
  clear_if_unpadded(left_padding_);
}

void KVCache::drop_padding(int n) {
  if (n > offset()) fail("cache", "cannot drop more positions than the cache holds");
  for (int p : left_padding_.empty() ? std::vector<int>{0} : left_padding_)
    if (p < n) fail("cache", "drop_leading would remove a stored token");
  for (int& p : left_padding_) p -= n;
  clear_if_unpadded(left_padding_);
}

std::vector<int> KVCache::row_offsets() const {
  std::vector<int> out;
  for (int p : left_padding_) out.push_back(offset() - p);
  return out;
}

void KVCache::select_padding(const mx::array& batch_indices) {
  if (left_padding_.empty()) return;
  auto idx = mx::astype(batch_indices, mx::int32);
  mx::eval(idx);
  std::vector<int> next;
  const int32_t* p = idx.data<int32_t>();
  for (size_t i = 0; i < idx.size(); ++i) {
    if (p[i] < 0 || p[i] >= static_cast<int>(left_padding_.size())) fail("cache", "batch index out of range");
    next.push_back(left_padding_[p[i]]);
  }
  left_padding_ = std::move(next);
  clear_if_unpadded(left_padding_);
}

std::optional<std::pair<mx::array, mx::array>> StandardKVCache::fetch() const {
  if (!keys_) return std::nullopt;
  exclusive_ = false;
  auto ks = keys_->shape(), vs = values_->shape();
  ks[2] = vs[2] = offset_;
  return std::make_pair(mx::slice(*keys_, {0, 0, 0, 0}, ks), mx::slice(*values_, {0, 0, 0, 0}, vs));
}

void StandardKVCache::select(const mx::array& batch_indices) {
  if (batch_indices.ndim() != 1 || batch_indices.size() == 0)
    fail("cache", "batch indices must be a non-empty 1-D array");
  if (!mx::issubdtype(batch_indices.dtype(), mx::integer)) fail("cache", "batch indices must be integers");
  if (!keys_) return;  // nothing stored yet: the first update() sets the batch size
  select_padding(batch_indices);
  // Gathering the whole buffer (capacity included) keeps its growth step; MLX's take is lazy, and
  // out-of-range indices are the caller's bug (they are not checked here: that would need a host sync).
  auto idx = mx::astype(batch_indices, mx::int32);
  *keys_ = mx::take(*keys_, idx, 0);
  *values_ = mx::take(*values_, idx, 0);
  exclusive_ = true;
}

std::unique_ptr<KVCache> StandardKVCache::clone() const {
  // MLX arrays are immutable values; sharing the buffers is safe because update() rebinds them.
  auto c = std::make_unique<StandardKVCache>(step_);
  c->offset_ = offset_;
  c->left_padding_ = left_padding_;
  if (keys_) {
    c->keys_ = std::make_shared<mx::array>(*keys_);
    c->values_ = std::make_shared<mx::array>(*values_);
  }
  exclusive_ = false;  // c->exclusive_ is false too
  return c;
}

void StandardKVCache::append_rows(const StandardKVCache& other) {
  auto mine = fetch(), theirs = other.fetch();
  if (!theirs) fail("cache", "cannot append rows from an empty cache");
  if (!mine) {
    *this = StandardKVCache(other.step_);
    offset_ = other.offset_;
    left_padding_ = other.left_padding_;
    keys_ = std::make_shared<mx::array>(theirs->first);
    values_ = std::make_shared<mx::array>(theirs->second);
    return;
  }
  if (mine->first.shape(1) != theirs->first.shape(1) || mine->first.shape(3) != theirs->first.shape(3))
    fail("cache", "cannot append rows of a cache with another head layout");
  const int len = std::max(offset_, other.offset_);
  join_padding(other, mine->first.shape(0), theirs->first.shape(0), len);
  auto join = [&](const mx::array& a, const mx::array& b) {
    return mx::concatenate({pad_front(a, len), pad_front(mx::astype(b, a.dtype()), len)}, 0);
  };
  keys_ = std::make_shared<mx::array>(join(mine->first, theirs->first));
  values_ = std::make_shared<mx::array>(join(mine->second, theirs->second));
  offset_ = len;
  exclusive_ = true;
}

std::optional<StandardKVCache::Writable> StandardKVCache::writable(int t) {
  if (!keys_) return std::nullopt;
  if (t <= 0) fail("cache", "writable needs a positive number of positions");
  // Growing copies the valid positions into new buffers, which is also how shared ones (or views, after
  // drop_leading) become this cache's own: mx::copy would only share the buffer.
  if (!exclusive_ || offset_ + t > keys_->shape(2)) {
    keys_ = std::make_shared<mx::array>(grow(keys_, offset_, offset_ + t, step_, *keys_));
    values_ = std::make_shared<mx::array>(grow(values_, offset_, offset_ + t, step_, *values_));
  }
  exclusive_ = true;
  return Writable{*keys_, *values_, offset_};
}

void StandardKVCache::advance(int t) {
  if (t <= 0 || !keys_ || offset_ + t > keys_->shape(2)) fail("cache", "advance past the buffers' capacity");
  offset_ += t;
}

void StandardKVCache::drop_leading(int n) {
  if (n <= 0) return;
  auto kv = fetch();
  if (!kv) fail("cache", "cannot drop positions of an empty cache");
  drop_padding(n);
  keys_ = std::make_shared<mx::array>(cut_front(kv->first, n));
  values_ = std::make_shared<mx::array>(cut_front(kv->second, n));
  offset_ -= n;
}

}  // namespace mlxgp
