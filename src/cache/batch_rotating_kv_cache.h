// Rows of rotating KV caches (max_kv_size) that decode together, each keeping exactly the view it has
// alone (mlx-lm's BatchRotatingKVCache plays this part in its BatchGenerator). Alone, a rotating cache's
// one-token step lets the query see the first `keep` tokens of its row and its last max_size - keep
// tokens. Here one buffer [B, H, max_size, D] holds, per row, its first `keep` tokens in the first
// columns and, in the other W = max_size - keep columns, a ring that every row writes at the same column
// each step (all rows advance together); the mask of each step hides what a row does not hold yet and the
// first tokens that its ring also holds. Rows join (append_rows) after their own prefill, as the standard
// cache's rows do; multi-token chunks are not taken (a batch only decodes).
#pragma once

#include <memory>
#include <vector>

#include "mlxgp/kv_cache.h"
#include "mlxgp/rotating_kv_cache.h"

namespace mx = mlx::core;

namespace mlxgp {

class BatchRotatingKVCache : public KVCache {
 public:
  // The rows of `rows` (a prefilled rotating cache), with the view they have there.
  explicit BatchRotatingKVCache(const RotatingKVCache& rows);
  // The batch's timeline: the longest row's length. Shorter rows count as left-padded (left_padding()),
  // so row_offsets() is each row's own position, as RoPE needs.
  int offset() const override { return timeline_; }
  // One token per row (throws [cache] for a chunk).
  std::pair<mx::array, mx::array> update(const mx::array& keys, const mx::array& values) override;
  // Evicted positions cannot come back (a rotating cache past its size is not trimmable either).
  int trim(int) override { return 0; }
  bool is_trimmable() const override { return false; }
  std::unique_ptr<KVCache> clone() const override;
  // An explicit [B, 1, 1, max_size] mask for one query (throws [cache] for more).
  AttentionMask make_mask(int n) const override;
  void select(const mx::array& batch_indices) override;
  // Appends the rows of `more` (same max_size and keep; throws [cache] otherwise).
  void append_rows(const RotatingKVCache& more);
  // Drops n positions of padding every row has (the timeline shortens; nothing is stored for them).
  void drop_leading(int n);

 private:
  mx::array layout(const mx::array& ordered, int length) const;
  void set_padding();

  int max_size_, keep_, width_;
  int head_;  // ring column (0 .. width_ - 1) of the newest token
  int timeline_ = 0;
  std::vector<int> lengths_;  // tokens each row has seen
  std::shared_ptr<mx::array> keys_, values_;
};

}  // namespace mlxgp
