// The cache of a recurrent layer (LFM2's short convolution, Qwen3-Next's gated delta rule): arrays that each forward
// reads and replaces whole instead of positions appended to (mlx-lm's ArraysCache). It counts the positions it has seen
// and keeps a left-padded batch's padding as the KV caches do, so every layer of a hybrid model agrees on positions and
// masks. It cannot be trimmed: the state before a position is gone once the position is in.
#pragma once

#include <optional>
#include <vector>

#include "mlxgp/kv_cache.h"

namespace mlxgp {

class RecurrentCache : public KVCache {
 public:
  // `slots`: how many state arrays the layer keeps (one: the convolution's last inputs).
  explicit RecurrentCache(int slots = 1);
  // One slot per shape: each state's shape after its batch axis (what a saved prompt cache must hold).
  explicit RecurrentCache(std::vector<mlx::core::Shape> slot_shapes);
  int offset() const override { return offset_; }
  // Throws [cache]: a recurrent layer stores no keys or values.
  std::pair<mlx::core::array, mlx::core::array> update(const mlx::core::array& keys,
                                                       const mlx::core::array& values) override;
  int trim(int) override { return 0; }
  bool is_trimmable() const override { return false; }
  std::unique_ptr<KVCache> clone() const override;
  void select(const mlx::core::array& batch_indices) override;

  int slots() const { return static_cast<int>(state_.size()); }
  // Slot `slot`'s shape after the batch axis; empty when the layer did not say.
  const mlx::core::Shape& slot_shape(int slot) const;
  // The state in `slot` ([B, ...]); nullopt before the layer first ran.
  const std::optional<mlx::core::array>& state(int slot) const;
  void set_state(int slot, const mlx::core::array& value);
  // Counts the `n` positions a forward fed (the layer calls it once it has set its state).
  void advance(int n) { offset_ += n; }
  // Whether each of the next `n` positions of each row holds a token ([B, n] bool): false on a left-padded
  // row's padding, which must leave the state as it is. nullopt when no row is padded.
  std::optional<mlx::core::array> token_mask(int n) const;

  // Batch rows joining and leaving (batch_cache.h): `other`'s rows after these, the positions aligned on the
  // right as the KV caches align them (a state does not depend on where its row's padding ends); drop_leading
  // drops n positions of padding every row has.
  void append_rows(const RecurrentCache& other);
  void drop_leading(int n);
  int rows() const { return rows_; }

 private:
  std::vector<std::optional<mlx::core::array>> state_;
  std::vector<mlx::core::Shape> shapes_;
  int offset_ = 0;
  int rows_ = 0;
};

// Whether `caches` hold a recurrent layer's state, which no trim() rolls back (speculative decoding refuses them).
bool has_recurrent_state(const KVCacheList& caches);

}  // namespace mlxgp
