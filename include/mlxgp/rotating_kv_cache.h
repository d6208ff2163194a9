// RotatingKVCache: bounded memory for long generations (mlx-lm's RotatingKVCache). It holds at most
// `max_size` positions for single-token steps: the first `keep` positions stay forever and the rest
// form a ring that overwrites the oldest entry. A multi-token chunk is appended to the cache put
// back in temporal order and trimmed to max_size - 1 old positions, so every new query still sees
// max_size keys (the chunk's own mask limits each query to a window of max_size).
#pragma once

#include <algorithm>
#include <optional>

#include "mlxgp/kv_cache.h"

namespace mlxgp {

class RotatingKVCache : public KVCache {
 public:
  // Throws [cache] unless 0 <= keep < max_size.
  explicit RotatingKVCache(int max_size, int keep = 4, int step = 256);
  int offset() const override { return offset_; }
  std::pair<mlx::core::array, mlx::core::array> update(const mlx::core::array& keys,
                                                       const mlx::core::array& values) override;
  // mlx-lm: trimmable only while nothing has been evicted yet (offset < max_size).
  int trim(int n) override;
  bool is_trimmable() const override { return offset_ < max_size_; }
  std::unique_ptr<KVCache> clone() const override;
  AttentionMask make_mask(int n) const override;
  void select(const mlx::core::array& batch_indices) override;

  int max_size() const { return max_size_; }
  int keep() const { return keep_; }
  // Positions currently held (mlx-lm size()): min(offset, max_size).
  int size() const { return std::min(offset_, max_size_); }
  // The raw buffer length (ring order; > max_size right after a chunk). 0 before the first update.
  int buffer_length() const { return keys_ ? keys_->shape(2) : 0; }
  // The positions held, in temporal order (keys, values [B, H, held, D]): the first min(keep, offset)
  // are the row's first tokens, the last min(offset, max_size - keep) its latest. nullopt when empty.
  std::optional<std::pair<mlx::core::array, mlx::core::array>> ordered() const;

 private:
  std::pair<mlx::core::array, mlx::core::array> update_in_place(const mlx::core::array& keys,
                                                                const mlx::core::array& values);
  std::pair<mlx::core::array, mlx::core::array> update_concat(const mlx::core::array& keys,
                                                              const mlx::core::array& values);
  mlx::core::array temporal_order(const mlx::core::array& v) const;
  mlx::core::array trim_front(int trim_size, const mlx::core::array& v,
                              const std::optional<mlx::core::array>& append) const;
  std::pair<mlx::core::array, mlx::core::array> keys_and_values() const;

  int max_size_, keep_, step_;
  int offset_ = 0;
  int idx_ = 0;  // next write position in the buffer
  std::shared_ptr<mlx::core::array> keys_, values_;
};

}  // namespace mlxgp
