// RecurrentCache: recurrent_cache.h.
#include "mlxgp/recurrent_cache.h"

#include <algorithm>
#include <string>

#include <mlx/mlx.h>

#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

RecurrentCache::RecurrentCache(int slots) {
  if (slots < 1) fail("cache", "a recurrent cache needs at least one state slot");
  state_.resize(slots);
  shapes_.resize(slots);
}

RecurrentCache::RecurrentCache(std::vector<mx::Shape> slot_shapes)
    : RecurrentCache(static_cast<int>(slot_shapes.size())) {
  shapes_ = std::move(slot_shapes);
}

const mx::Shape& RecurrentCache::slot_shape(int slot) const {
  if (slot < 0 || slot >= slots()) fail("cache", "no state slot " + std::to_string(slot));
  return shapes_[slot];
}

std::pair<mx::array, mx::array> RecurrentCache::update(const mx::array&, const mx::array&) {
  fail("cache", "a recurrent layer's cache holds no keys or values");
}

std::unique_ptr<KVCache> RecurrentCache::clone() const {
  // MLX arrays are immutable values: the states are shared until a forward replaces them.
  return std::make_unique<RecurrentCache>(*this);
}

const std::optional<mx::array>& RecurrentCache::state(int slot) const {
  if (slot < 0 || slot >= slots()) fail("cache", "no state slot " + std::to_string(slot));
  return state_[slot];
}

void RecurrentCache::set_state(int slot, const mx::array& value) {
  if (slot < 0 || slot >= slots()) fail("cache", "no state slot " + std::to_string(slot));
  if (value.ndim() < 1) fail("cache", "a recurrent state must have a batch axis");
  for (const auto& s : state_)
    if (s && &s != &state_[slot] && s->shape(0) != value.shape(0))
      fail("cache", "a recurrent state's batch rows must match the other slots'");
  state_[slot] = value;
  rows_ = value.shape(0);
}

void RecurrentCache::select(const mx::array& batch_indices) {
  if (batch_indices.ndim() != 1) fail("cache", "batch indices must be a 1-D array");
  select_padding(batch_indices);
  auto idx = mx::astype(batch_indices, mx::int32);
  for (auto& s : state_)
    if (s) s = mx::take(*s, idx, 0);
  if (rows_ > 0) rows_ = batch_indices.shape(0);
}

std::optional<mx::array> RecurrentCache::token_mask(int n) const {
  if (left_padding_.empty()) return std::nullopt;
  const int b = static_cast<int>(left_padding_.size());
  auto pad = mx::array(left_padding_.data(), {b, 1}, mx::int32);
  auto pos = mx::reshape(mx::arange(offset_, offset_ + n, mx::int32), {1, n});
  return mx::greater_equal(pos, pad);
}

void RecurrentCache::append_rows(const RecurrentCache& other) {
  if (other.slots() != slots()) fail("cache", "cannot append rows of a recurrent cache with other state slots");
  if (other.rows_ == 0) fail("cache", "cannot append rows from an empty cache");
  if (rows_ == 0) {
    *this = other;
    return;
  }
  const int len = std::max(offset_, other.offset_);
  join_padding(other, rows_, other.rows_, len);
  for (int i = 0; i < slots(); ++i) {
    const auto &mine = state_[i], &theirs = other.state_[i];
    if (!mine && !theirs) continue;
    // A slot one side never set holds its initial state, zeros.
    const auto& like = mine ? *mine : *theirs;
    auto zeros_for = [&](int rows) {
      auto shape = like.shape();
      shape[0] = rows;
      return mx::zeros(shape, like.dtype());
    };
    auto a = mine ? *mine : zeros_for(rows_);
    auto b = theirs ? mx::astype(*theirs, a.dtype()) : zeros_for(other.rows_);
    if (a.ndim() != b.ndim() || !std::equal(a.shape().begin() + 1, a.shape().end(), b.shape().begin() + 1))
      fail("cache", "cannot append rows of a recurrent cache with another state shape");
    state_[i] = mx::concatenate({a, b}, 0);
  }
  offset_ = len;
  rows_ += other.rows_;
}

void RecurrentCache::drop_leading(int n) {
  drop_padding(n);
  offset_ -= n;
}

bool has_recurrent_state(const KVCacheList& caches) {
  return std::any_of(caches.begin(), caches.end(),
                     [](const auto& c) { return dynamic_cast<const RecurrentCache*>(c.get()) != nullptr; });
}

}  // namespace mlxgp
