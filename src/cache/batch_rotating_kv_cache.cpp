#include "cache/batch_rotating_kv_cache.h"

#include <algorithm>
#include <string>

#include <mlx/mlx.h>

#include "mlxgp/error.h"

#include "cache/row_padding.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

mx::array columns(const mx::array& a, int from, int to) {
  mx::Shape start(a.ndim(), 0), stop = a.shape();
  start[2] = from;
  stop[2] = to;
  return mx::slice(a, start, stop);
}

// `a` with zero positions appended on axis 2 until it holds `len` (they are masked out).
mx::array pad_back(const mx::array& a, int len) {
  const int extra = len - a.shape(2);
  if (extra <= 0) return a;
  mx::Shape z = a.shape();
  z[2] = extra;
  return mx::concatenate({a, mx::zeros(z, a.dtype())}, 2);
}

}  // namespace

BatchRotatingKVCache::BatchRotatingKVCache(const RotatingKVCache& rows)
    : max_size_(rows.max_size()), keep_(rows.keep()), width_(rows.max_size() - rows.keep()), head_(width_ - 1) {
  auto kv = rows.ordered();
  if (!kv) fail("cache", "cannot batch the rows of an empty rotating cache");
  timeline_ = rows.offset();
  lengths_.assign(kv->first.shape(0), timeline_);
  keys_ = std::make_shared<mx::array>(layout(kv->first, timeline_));
  values_ = std::make_shared<mx::array>(layout(kv->second, timeline_));
}

mx::array BatchRotatingKVCache::layout(const mx::array& ordered, int length) const {
  // Columns [0, keep): the row's first tokens. The ring: its last min(length, width) tokens, the newest
  // on column head_ and each older one a column before it (wrapping).
  const int held = ordered.shape(2);
  std::vector<mx::array> parts;
  if (keep_ > 0) parts.push_back(pad_back(columns(ordered, 0, std::min(keep_, length)), keep_));
  auto ring = pad_front(columns(ordered, held - std::min(length, width_), held), width_);  // newest last
  const int cut = width_ - 1 - head_;  // ring column c takes ring[(c + cut) % width]
  if (cut > 0) ring = mx::concatenate({columns(ring, cut, width_), columns(ring, 0, cut)}, 2);
  parts.push_back(ring);
  return parts.size() == 1 ? parts[0] : mx::concatenate(parts, 2);
}

void BatchRotatingKVCache::set_padding() {
  left_padding_.clear();
  for (int n : lengths_) left_padding_.push_back(timeline_ - n);
  if (std::all_of(left_padding_.begin(), left_padding_.end(), [](int p) { return p == 0; })) left_padding_.clear();
}

void BatchRotatingKVCache::append_rows(const RotatingKVCache& more) {
  if (more.max_size() != max_size_ || more.keep() != keep_)
    fail("cache", "rows of rotating caches share a batch only with the same max_kv_size and keep");
  auto kv = more.ordered();
  if (!kv) fail("cache", "cannot append rows from an empty cache");
  if (kv->first.shape(1) != keys_->shape(1) || kv->first.shape(3) != keys_->shape(3))
    fail("cache", "cannot append rows of a cache with another head layout");
  auto join = [&](const mx::array& a, const mx::array& b) {
    return mx::concatenate({a, mx::astype(layout(b, more.offset()), a.dtype())}, 0);
  };
  keys_ = std::make_shared<mx::array>(join(*keys_, kv->first));
  values_ = std::make_shared<mx::array>(join(*values_, kv->second));
  lengths_.insert(lengths_.end(), kv->first.shape(0), more.offset());
  timeline_ = std::max(timeline_, more.offset());
  set_padding();
}

std::pair<mx::array, mx::array> BatchRotatingKVCache::update(const mx::array& keys, const mx::array& values) {
  if (keys.ndim() != 4 || values.ndim() != 4 || keys.shape(2) != 1 || values.shape(2) != 1)
    fail("cache", "a batch of rotating caches takes one token per row and step");
  if (keys.shape(0) != keys_->shape(0) || keys.shape(1) != keys_->shape(1) || keys.shape(3) != keys_->shape(3) ||
      values.shape(0) != values_->shape(0) || values.shape(3) != values_->shape(3))
    fail("cache", "keys/values shape does not match the cached entries");
  head_ = (head_ + 1) % width_;
  const int col = keep_ + head_;
  auto write = [&](const std::shared_ptr<mx::array>& buf, const mx::array& x) {
    auto stop = buf->shape();
    stop[2] = col + 1;
    *buf = mx::slice_update(*buf, mx::astype(x, buf->dtype()), mx::Shape{0, 0, col, 0}, stop);
  };
  write(keys_, keys);
  write(values_, values);
  // A row's first `keep` tokens stay in the first columns for good (the ring overwrites its copies): a
  // token at position < keep goes there too. Rows reach such positions only in their first steps.
  for (int b = 0; b < static_cast<int>(lengths_.size()); ++b) {
    if (lengths_[b] >= keep_) continue;
    auto keep_write = [&](const std::shared_ptr<mx::array>& buf, const mx::array& x) {
      auto stop = buf->shape();
      stop[0] = b + 1;
      stop[2] = lengths_[b] + 1;
      auto row = mx::slice(x, {b, 0, 0, 0}, {b + 1, x.shape(1), 1, x.shape(3)});
      *buf = mx::slice_update(*buf, mx::astype(row, buf->dtype()), mx::Shape{b, 0, lengths_[b], 0}, stop);
    };
    keep_write(keys_, keys);
    keep_write(values_, values);
  }
  for (int& n : lengths_) ++n;
  ++timeline_;
  return {*keys_, *values_};
}

AttentionMask BatchRotatingKVCache::make_mask(int n) const {
  if (n != 1) fail("cache", "a batch of rotating caches takes one token per row and step");
  // After this step's update, row b holds `seen` tokens; ring column c holds the one written `age`
  // steps ago. A first token the ring still holds is hidden in the first columns (counted once).
  const int rows = static_cast<int>(lengths_.size()), next = (head_ + 1) % width_;
  std::vector<uint8_t> visible(static_cast<size_t>(rows) * max_size_);
  for (int b = 0; b < rows; ++b) {
    const int seen = lengths_[b] + 1;
    uint8_t* v = visible.data() + static_cast<size_t>(b) * max_size_;
    for (int j = 0; j < keep_; ++j) v[j] = j < seen && j < seen - width_;
    for (int c = 0; c < width_; ++c) v[keep_ + c] = (next - c + width_) % width_ < seen;
  }
  mx::array mask(visible.begin(), {rows, 1, 1, max_size_}, mx::bool_);
  return {AttentionMask::Kind::Array, mask, {}};
}

void BatchRotatingKVCache::select(const mx::array& batch_indices) {
  if (batch_indices.ndim() != 1 || batch_indices.size() == 0)
    fail("cache", "batch indices must be a non-empty 1-D array");
  if (!mx::issubdtype(batch_indices.dtype(), mx::integer)) fail("cache", "batch indices must be integers");
  auto idx = mx::astype(batch_indices, mx::int32);
  idx.eval();  // the row lengths follow the rows on the host
  std::vector<int> lengths;
  for (int i : std::vector<int>(idx.data<int>(), idx.data<int>() + idx.size())) {
    if (i < 0 || i >= static_cast<int>(lengths_.size())) fail("cache", "batch index out of range");
    lengths.push_back(lengths_[i]);
  }
  lengths_ = std::move(lengths);
  *keys_ = mx::take(*keys_, idx, 0);
  *values_ = mx::take(*values_, idx, 0);
  set_padding();
}

void BatchRotatingKVCache::drop_leading(int n) {
  for (int len : lengths_)
    if (timeline_ - len < n) fail("cache", "cannot drop positions that are not padding in every row");
  timeline_ -= n;
  set_padding();
}

std::unique_ptr<KVCache> BatchRotatingKVCache::clone() const {
  auto c = std::make_unique<BatchRotatingKVCache>(*this);
  // update() rebinds the array a pointer holds: the copy needs pointers of its own.
  c->keys_ = std::make_shared<mx::array>(*keys_);
  c->values_ = std::make_shared<mx::array>(*values_);
  return c;
}

}  // namespace mlxgp
