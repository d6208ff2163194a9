// KV caches. Keys/values are [B, n_kv_heads, T, head_dim]. Caches preallocate and grow in steps,
// never concatenating per token (mlx-lm's KVCache design).
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include <mlx/array.h>

namespace mlxgp {

namespace mx = mlx::core;

class KVCache {
 public:
  virtual ~KVCache() = default;
  // Number of positions already stored (the position of the next token).
  virtual int offset() const = 0;
  // Appends keys/values [B, H, T, D] and returns all stored keys/values [B, H, offset, D].
  virtual std::pair<mx::array, mx::array> update(const mx::array& keys, const mx::array& values) = 0;
  // Drops the last n positions (speculative rollback); returns how many were dropped.
  virtual int trim(int n) = 0;
  virtual bool is_trimmable() const = 0;
  virtual std::unique_ptr<KVCache> clone() const = 0;
};

// The standard cache: one buffer that grows by `step` positions when full.
class StandardKVCache : public KVCache {
 public:
  explicit StandardKVCache(int step = 256) : step_(step) {}
  int offset() const override { return offset_; }
  std::pair<mx::array, mx::array> update(const mx::array& keys, const mx::array& values) override;
  int trim(int n) override;
  bool is_trimmable() const override { return true; }
  std::unique_ptr<KVCache> clone() const override;

 private:
  int step_;
  int offset_ = 0;
  std::shared_ptr<mx::array> keys_, values_;  // shared_ptr: mx::array has no default constructor
};

using KVCacheList = std::vector<std::unique_ptr<KVCache>>;

}  // namespace mlxgp
