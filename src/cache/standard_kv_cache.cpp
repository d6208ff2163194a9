// StandardKVCache: one preallocated buffer per keys/values that grows by `step` positions, written
// with slice_update, so a decode step never concatenates (mlx-lm KVCache semantics).
#include <algorithm>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/kv_cache.h"

#include "cache/row_padding.h"
#include "kernels/position_moves.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

// `buf`'s first `rows` rows and `used` positions in new zero buffers of `row_capacity` rows and room for
// `needed` positions (a whole number of steps). Without `buf`: zeros of `shape` and `dtype` with that room.
mx::array grow(const std::shared_ptr<mx::array>& buf, int rows, int row_capacity, int used, int needed, int step,
               mx::Shape shape, mx::Dtype dtype) {
  shape[2] = (needed + step - 1) / step * step;
  if (!buf) return mx::zeros(shape, dtype);
  shape[0] = row_capacity;
  // Keep only the valid prefix (a trim may have left stale positions).
  mx::Shape stop = buf->shape();
  stop[0] = rows;
  stop[2] = used;
  auto valid = mx::slice(*buf, {0, 0, 0, 0}, stop);
  if (row_capacity == rows) {  // pad with zeros once
    mx::Shape extra = shape;
    extra[2] = shape[2] - used;
    return mx::concatenate({valid, mx::zeros(extra, buf->dtype())}, 2);
  }
  // Rows reserved for joining ones stay unwritten (their padding is zeroed when they join).
  auto room = kernels::position_moves_supported(*buf) ? kernels::unwritten(shape, buf->dtype())
                                                      : mx::zeros(shape, buf->dtype());
  return mx::slice_update(room, valid, {0, 0, 0, 0}, stop);
}

// Padding positions hold zeros (what pad_front adds): the fused decode step skips them, but attention op
// by op weights them by exactly zero, and stale values there could be inf or nan, which zero weights keep.
// `buf` with `moves` applied (kernels::move_positions: in place when the cache holds it alone).
void apply_moves(std::shared_ptr<mx::array>& buf, const std::vector<kernels::PositionMove>& moves) {
  if (!moves.empty()) buf = std::make_shared<mx::array>(kernels::move_positions(*buf, moves));
}

// The rows of a batch whose caches move positions in place (CPU); elsewhere gathers and concatenations.
bool moves_in_place(const std::shared_ptr<mx::array>& buf) { return buf && kernels::position_moves_supported(*buf); }

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
  if (keys_ && (rows_ != keys.shape(0) || keys_->shape(1) != keys.shape(1) || keys_->shape(3) != keys.shape(3) ||
                values_->shape(3) != values.shape(3)))
    fail("cache", "keys/values shape does not match the cached entries");
  if (!keys_) {
    rows_ = keys.shape(0);
    keys_ = std::make_shared<mx::array>(
        grow(nullptr, rows_, rows_, 0, t, step_, keys.shape(), dtype_.value_or(keys.dtype())));
    values_ = std::make_shared<mx::array>(
        grow(nullptr, rows_, rows_, 0, t, step_, values.shape(), dtype_.value_or(values.dtype())));
  } else if (prev + t > keys_->shape(2)) {
    reallocate(keys_->shape(0), prev + t);
  }
  offset_ = prev + t;
  // The slice update's result is this cache's alone (MLX writes in place only into a buffer nothing else
  // holds); the views returned below are read by this step's attention, dispatched before any later write.
  exclusive_ = true;
  auto kshape = keys_->shape();
  auto vshape = values_->shape();
  *keys_ = mx::slice_update(*keys_, mx::astype(keys, keys_->dtype()), mx::Shape{0, 0, prev, 0},
                            mx::Shape{rows_, kshape[1], offset_, kshape[3]});
  *values_ = mx::slice_update(*values_, mx::astype(values, values_->dtype()), mx::Shape{0, 0, prev, 0},
                              mx::Shape{rows_, vshape[1], offset_, vshape[3]});
  return {mx::slice(*keys_, {0, 0, 0, 0}, {rows_, kshape[1], offset_, kshape[3]}),
          mx::slice(*values_, {0, 0, 0, 0}, {rows_, vshape[1], offset_, vshape[3]})};
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
  ks[0] = vs[0] = rows_;
  ks[2] = vs[2] = offset_;
  return std::make_pair(mx::slice(*keys_, {0, 0, 0, 0}, ks), mx::slice(*values_, {0, 0, 0, 0}, vs));
}

std::pair<mx::array, mx::array> StandardKVCache::copy_positions(int row, int start, int length) const {
  if (!keys_ || row < 0 || row >= rows_ || start < 0 || length <= 0 || start + length > offset_)
    fail("cache", "copy_positions: row or positions out of range");
  // contiguous() of a slice copies it into its own buffer (a slice that is already one block, a whole row
  // at full capacity, stays a view: no later write reaches its positions, and moves then copy).
  auto cut = [&](const mx::array& a) {
    return mx::contiguous(mx::slice(a, {row, 0, start, 0}, {row + 1, a.shape(1), start + length, a.shape(3)}));
  };
  return {cut(*keys_), cut(*values_)};
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
  rows_ = keys_->shape(0);
  exclusive_ = true;
}

std::unique_ptr<KVCache> StandardKVCache::clone() const {
  // MLX arrays are immutable values; sharing the buffers is safe because update() rebinds them.
  auto c = std::make_unique<StandardKVCache>(step_, dtype_);
  c->offset_ = offset_;
  c->rows_ = rows_;
  c->left_padding_ = left_padding_;
  if (keys_) {
    c->keys_ = std::make_shared<mx::array>(*keys_);
    c->values_ = std::make_shared<mx::array>(*values_);
  }
  exclusive_ = false;  // c->exclusive_ is false too
  return c;
}

void StandardKVCache::reallocate(int row_capacity, int positions) {
  keys_ = std::make_shared<mx::array>(
      grow(keys_, rows_, row_capacity, offset_, positions, step_, keys_->shape(), keys_->dtype()));
  values_ = std::make_shared<mx::array>(
      grow(values_, rows_, row_capacity, offset_, positions, step_, values_->shape(), values_->dtype()));
  exclusive_ = true;
}

void StandardKVCache::append_rows(const StandardKVCache& other, int reserve_rows) {
  auto theirs = other.fetch();
  if (!theirs) fail("cache", "cannot append rows from an empty cache");
  const int more = theirs->first.shape(0);
  if (!keys_) {
    *this = StandardKVCache(other.step_, other.dtype_);
    offset_ = other.offset_;
    left_padding_ = other.left_padding_;
    rows_ = more;
    keys_ = std::make_shared<mx::array>(theirs->first);
    values_ = std::make_shared<mx::array>(theirs->second);
    // Rows that will join get room now (the views above become buffers of their own).
    if (reserve_rows > rows_ && moves_in_place(keys_)) reallocate(reserve_rows, offset_ + 1);
    return;
  }
  if (keys_->shape(1) != theirs->first.shape(1) || keys_->shape(3) != theirs->first.shape(3))
    fail("cache", "cannot append rows of a cache with another head layout");
  const int len = std::max(offset_, other.offset_);
  if (!moves_in_place(keys_)) {  // concatenated into new buffers
    auto mine = fetch();
    join_padding(other, rows_, more, len);
    auto join = [&](const mx::array& a, const mx::array& b) {
      return mx::concatenate({pad_front(a, len), pad_front(mx::astype(b, a.dtype()), len)}, 0);
    };
    keys_ = std::make_shared<mx::array>(join(mine->first, theirs->first));
    values_ = std::make_shared<mx::array>(join(mine->second, theirs->second));
    offset_ = len;
    rows_ += more;
    exclusive_ = true;
    return;
  }
  // Room for the new rows (reserve_rows at once: kernels::unwritten maps them in as they are used) and positions.
  if (rows_ + more > keys_->shape(0) || len + 1 > keys_->shape(2))
    reallocate(std::max({keys_->shape(0), rows_ + more, reserve_rows}), std::max(keys_->shape(2), len + 1));
  // Stored rows shorter than the new ones move right, and their new padding becomes zeros; the new rows'
  // padding (reserved rows are unwritten) too.
  std::vector<kernels::PositionMove> moves;
  const int shift = len - offset_;
  for (int r = 0; shift > 0 && r < rows_; ++r) {
    const int pad = left_padding_.empty() ? 0 : left_padding_[r];
    moves.push_back({r, r, pad, pad + shift, offset_ - pad});
    moves.push_back({-1, r, 0, pad, shift});
  }
  for (int r = rows_; r < rows_ + more; ++r) moves.push_back({-1, r, 0, 0, len - other.offset_});
  apply_moves(keys_, moves);
  apply_moves(values_, moves);
  join_padding(other, rows_, more, len);
  // The new rows' positions right-aligned at len (slice_update writes in place into a buffer held alone).
  const mx::Shape start{rows_, 0, len - other.offset_, 0};
  auto put = [&](const mx::array& buf, const mx::array& rows) {
    return mx::slice_update(buf, mx::astype(rows, buf.dtype()), start, {rows_ + more, buf.shape(1), len, buf.shape(3)});
  };
  keys_ = std::make_shared<mx::array>(put(*keys_, theirs->first));
  values_ = std::make_shared<mx::array>(put(*values_, theirs->second));
  offset_ = len;
  rows_ += more;
  exclusive_ = true;
}

void StandardKVCache::keep_rows(const std::vector<int>& rows) {
  if (rows.empty()) fail("cache", "keep_rows needs at least one row");
  if (!keys_) return;  // nothing stored yet (as select()): the first update sets the rows
  for (size_t j = 0; j < rows.size(); ++j)
    if (rows[j] < 0 || rows[j] >= rows_) fail("cache", "batch index out of range");
  bool ascending = true;
  for (size_t j = 1; j < rows.size(); ++j) ascending = ascending && rows[j - 1] < rows[j];
  std::vector<int> pad;
  for (int r : rows) pad.push_back(left_padding_.empty() ? 0 : left_padding_[r]);
  const int shared = *std::min_element(pad.begin(), pad.end());
  // Shared padding costs no attention (the rows' key starts skip it), only room: drop it once it is a quarter
  // of the positions, so that moving every row is paid for by as many steps of growth.
  const int drop = 4 * shared >= offset_ ? shared : 0;
  if (!ascending || !moves_in_place(keys_)) {
    select(mx::array(rows.data(), {static_cast<int>(rows.size())}, mx::int32));
    if (shared > 0) drop_leading(shared);
    return;
  }
  // Ascending destinations, each row from itself or a later one: no move reads what an earlier one wrote.
  // A destination row's positions between its old padding and its new row's become zeros.
  std::vector<kernels::PositionMove> moves;
  for (int j = 0; j < static_cast<int>(rows.size()); ++j) {
    if (rows[j] == j && drop == 0) continue;
    moves.push_back({rows[j], j, pad[j], pad[j] - drop, offset_ - pad[j]});
    const int old_pad = left_padding_.empty() ? 0 : left_padding_[j];
    if (pad[j] - drop > old_pad) moves.push_back({-1, j, 0, old_pad, pad[j] - drop - old_pad});
  }
  apply_moves(keys_, moves);
  apply_moves(values_, moves);
  if (!moves.empty()) exclusive_ = true;  // the moves' output is this cache's (donated or copied)
  rows_ = static_cast<int>(rows.size());
  for (int& p : pad) p -= drop;
  left_padding_ = std::move(pad);
  clear_if_unpadded(left_padding_);
  offset_ -= drop;
}

std::optional<StandardKVCache::Writable> StandardKVCache::writable(int t) {
  if (!keys_) return std::nullopt;
  if (t <= 0) fail("cache", "writable needs a positive number of positions");
  // Growing copies the valid positions into new buffers, which is also how shared ones (or views, after
  // a gathered drop_leading) become this cache's own: mx::copy would only share the buffer.
  if (!exclusive_ || offset_ + t > keys_->shape(2)) reallocate(keys_->shape(0), offset_ + t);
  exclusive_ = true;
  return Writable{*keys_, *values_, offset_};
}

void StandardKVCache::advance(int t, const Writable& after) {
  if (t <= 0 || !keys_ || offset_ + t > keys_->shape(2)) fail("cache", "advance past the buffers' capacity");
  if (after.keys.shape() != keys_->shape() || after.values.shape() != values_->shape() || after.slot != offset_)
    fail("cache", "advance with buffers other than writable()'s");
  keys_ = std::make_shared<mx::array>(after.keys);
  values_ = std::make_shared<mx::array>(after.values);
  offset_ += t;
}

void StandardKVCache::drop_leading(int n) {
  if (n <= 0) return;
  if (!keys_) fail("cache", "cannot drop positions of an empty cache");
  const std::vector<int> before = left_padding_;
  drop_padding(n);
  if (moves_in_place(keys_)) {  // every row's positions move n to the left, within the buffers
    std::vector<kernels::PositionMove> moves;
    for (int r = 0; r < rows_; ++r) {
      const int pad = before.empty() ? 0 : before[r];
      moves.push_back({r, r, pad, pad - n, offset_ - pad});
    }
    apply_moves(keys_, moves);
    apply_moves(values_, moves);
    exclusive_ = true;
  } else {
    auto kv = fetch();
    keys_ = std::make_shared<mx::array>(cut_front(kv->first, n));
    values_ = std::make_shared<mx::array>(cut_front(kv->second, n));
  }
  offset_ -= n;
}

}  // namespace mlxgp
