// KV caches. Keys/values are [B, n_kv_heads, T, head_dim]. Caches preallocate and grow in steps,
// never concatenating per token (mlx-lm's KVCache design).
#pragma once

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <mlx/array.h>

namespace mlxgp {

// The attention mask a cache asks for (mlx-lm's make_mask): none (one query), "causal" aligned to
// the last key (sdpa's own mode), or an explicit boolean array [queries, keys] (true = attend).
struct AttentionMask {
  enum class Kind { None, Causal, Array } kind = Kind::None;
  std::optional<mlx::core::array> array;
  // A left-padded batch (KVCache::left_padding): None / Causal, and keys before key_start[b] hidden in
  // batch row b. `array` then holds the same mask in full ([B, 1, queries, keys]) for code that needs it.
  std::vector<int> key_start;
};

class KVCache {
 public:
  virtual ~KVCache() = default;
  // Number of positions already stored (the position of the next token).
  virtual int offset() const = 0;
  // Appends keys/values [B, H, T, D] and returns all stored keys/values [B, H, offset, D].
  virtual std::pair<mlx::core::array, mlx::core::array> update(const mlx::core::array& keys,
                                                               const mlx::core::array& values) = 0;
  // Drops the last n positions (speculative rollback); returns how many were dropped.
  virtual int trim(int n) = 0;
  virtual bool is_trimmable() const = 0;
  virtual std::unique_ptr<KVCache> clone() const = 0;
  // Keeps the batch rows named by `batch_indices` (int32 [B']), in that order, along axis 0: tiling a
  // one-row prompt cache to N rows is select([0, 0, ..., 0]); beam search reorders with it. Lazy (no
  // host sync). Throws [cache] for caches that cannot (the default) or on indices of the wrong shape.
  virtual void select(const mlx::core::array& batch_indices);
  // The mask for `n` new queries, decided BEFORE update() stores them (mlx-lm calls make_mask
  // first). The default is mlx-lm's create_attention_mask: causal for n > 1, none for one query; with
  // left padding, an explicit [B, 1, n, offset + n] mask that also hides each row's padding.
  virtual AttentionMask make_mask(int n) const;

  // Rows of different lengths share one cache aligned on the right (transformers' padding_side="left",
  // mlx-lm's BatchKVCache): row r's first left_padding()[r] positions hold no token. make_mask() hides
  // them and the row's positions (RoPE) start after them, so a row computes what it computes alone.
  // Empty when no row is padded. Standard and quantized caches take padding (batch_cache.h).
  const std::vector<int>& left_padding() const { return left_padding_; }
  // The position of each row's next token (offset() - left_padding()[r]); empty without padding.
  std::vector<int> row_offsets() const;

 protected:
  // Reorders left_padding_ as select(batch_indices) reorders the rows (reads the indices on the host).
  void select_padding(const mlx::core::array& batch_indices);
  // The padding after `other`'s rows are appended to these `rows` rows and both are aligned on the right
  // at `len` positions; call before offset() changes.
  void join_padding(const KVCache& other, int rows, int other_rows, int len);
  // Checks that every row has at least n positions of padding (throws [cache]) and removes them.
  void drop_padding(int n);
  std::vector<int> left_padding_;
};

// The standard cache: one buffer that grows by `step` positions when full. Its keys and values are stored
// in `dtype` (vLLM's kv_cache_dtype, llama.cpp's --cache-type-k/v: rounded as they are written, and
// attention reads the rounded values), or without one in the dtype of the first keys it is given.
class StandardKVCache : public KVCache {
 public:
  explicit StandardKVCache(int step = 256, std::optional<mlx::core::Dtype> dtype = std::nullopt)
      : step_(step), dtype_(dtype) {}
  int offset() const override { return offset_; }
  std::pair<mlx::core::array, mlx::core::array> update(const mlx::core::array& keys,
                                                       const mlx::core::array& values) override;
  int trim(int n) override;
  bool is_trimmable() const override { return true; }
  std::unique_ptr<KVCache> clone() const override;
  void select(const mlx::core::array& batch_indices) override;
  // The stored keys/values [B, H, offset, D]; nullopt before the first update (to_quantized reads it).
  std::optional<std::pair<mlx::core::array, mlx::core::array>> fetch() const;
  // Row `row`'s keys/values at positions [start, start + length) ([1, H, length, D]) as copies: the buffers
  // stay this cache's alone (as fetch()'s views would not), so evaluate the copies before its next update,
  // writable() or batch change. Throws [cache] out of range.
  std::pair<mlx::core::array, mlx::core::array> copy_positions(int row, int start, int length) const;
  // Batch rows joining and leaving (batch_cache.h): append_rows puts `other`'s rows after these, aligned
  // on the right (the shorter side gets left padding). With reserve_rows, the buffers keep room for that
  // many rows (on the CPU in pages mapped in when first written), so a join writes only its own rows. keep_rows
  // keeps `rows` in that order (ascending: moved within the buffers, dropping the padding every kept row
  // shares once it is a quarter of the positions; any other order: gathered, dropping it all). drop_leading drops the
  // first n positions of every row (padding that every row has).
  void append_rows(const StandardKVCache& other, int reserve_rows = 0);
  void keep_rows(const std::vector<int>& rows);
  void drop_leading(int n);
  // The batch rows stored (0 before the first update); the buffers may hold more (reserve_rows).
  int rows() const { return rows_; }
  // For a kernel that writes the next positions into the buffers itself (the fused decode step,
  // kernels/decode_layers.h): the whole buffers [rows >= B, H, capacity, D] with room for t more positions
  // (rows past B are reserved for joining rows: the kernel leaves them alone), held by
  // this cache alone (copied first where another cache or a fetch() view may share them), and the position
  // to write at; advance(t, after) then counts the positions written and keeps `after`: writable()'s buffers
  // passed through mx::depends on the writing node, so every later read of the cache runs that node first
  // (a graph node that writes its inputs in place is invisible to MLX otherwise: a step whose output nobody
  // evaluates would leave its positions unwritten). nullopt before the first update.
  struct Writable {
    mlx::core::array keys, values;
    int slot;
  };
  std::optional<Writable> writable(int t);
  void advance(int t, const Writable& after);

 private:
  // Buffers of `row_capacity` rows and `positions` positions holding this cache's rows and positions so far.
  void reallocate(int row_capacity, int positions);
  int step_;
  std::optional<mlx::core::Dtype> dtype_;
  int offset_ = 0;
  int rows_ = 0;
  std::shared_ptr<mlx::core::array> keys_, values_;  // shared_ptr: mlx::core::array has no default constructor
  // Whether only this cache holds the buffers, so positions from offset_ on may be written in place. A clone
  // shares them (both then copy before such a write); fetch() hands out views of them.
  mutable bool exclusive_ = false;
};

using KVCacheList = std::vector<std::unique_ptr<KVCache>>;

}  // namespace mlxgp
