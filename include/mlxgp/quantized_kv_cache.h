// QuantizedKVCache: keys/values stored MLX-affine quantized (mlx::core::quantize, `bits` per element,
// scales/biases per `group_size` elements of head_dim), growing in steps like mlx-lm's
// QuantizedKVCache. Attention reads it with quantized matmuls (quantized_attention), as mlx-lm's
// quantized_scaled_dot_product_attention does, so nothing is dequantized per step.
#pragma once

#include <array>

#include "mlxgp/kv_cache.h"

namespace mlxgp {

class StandardKVCache;

// One quantized tensor: packed uint32 data, scales and biases (mlx::core::quantize's outputs).
struct QuantizedTensor {
  mlx::core::array data, scales, biases;
};

class QuantizedKVCache : public KVCache {
 public:
  // Throws [cache] for unsupported bits (2, 3, 4, 5, 6, 8) or group sizes (32, 64, 128).
  explicit QuantizedKVCache(int group_size = 64, int bits = 8, int step = 256);
  // mlx-lm KVCache.to_quantized: the same positions, quantized.
  static std::unique_ptr<QuantizedKVCache> from_standard(const StandardKVCache& cache, int group_size, int bits);

  int offset() const override { return offset_; }
  // Stores keys/values quantized and returns them DEQUANTIZED (for callers that want plain arrays;
  // the attention layer uses update_quantized instead).
  std::pair<mlx::core::array, mlx::core::array> update(const mlx::core::array& keys,
                                                       const mlx::core::array& values) override;
  std::pair<QuantizedTensor, QuantizedTensor> update_quantized(const mlx::core::array& keys,
                                                               const mlx::core::array& values);
  int trim(int n) override;
  bool is_trimmable() const override { return true; }
  std::unique_ptr<KVCache> clone() const override;
  void select(const mlx::core::array& batch_indices) override;

  int group_size() const { return group_size_; }
  int bits() const { return bits_; }
  // The stored quantized keys/values [B, H, offset, ...]; nullopt before the first update.
  std::optional<std::pair<QuantizedTensor, QuantizedTensor>> fetch() const;
  // Batch rows joining and leaving, as StandardKVCache's (batch_cache.h); both caches quantize alike.
  void append_rows(const QuantizedKVCache& other);
  void drop_leading(int n);
  // StandardKVCache::writable's contract for the quantized buffers (data, scales and biases [B, H,
  // capacity, ...]), for the fused decode step that quantizes the next positions into them itself.
  struct Writable {
    QuantizedTensor keys, values;
    int slot;
  };
  std::optional<Writable> writable(int t);
  void advance(int t, const Writable& after);

 private:
  // The stored positions as views, leaving the buffers this cache's own (fetch() does not).
  std::pair<QuantizedTensor, QuantizedTensor> stored() const;

  int group_size_, bits_, step_;
  int offset_ = 0;
  std::optional<QuantizedTensor> keys_, values_;
  // Whether only this cache holds the buffers (StandardKVCache's flag): a clone shares them, fetch() hands
  // out views, and rows taken from another cache are that cache's too.
  mutable bool exclusive_ = false;
};

// Attention of queries [B, n_heads, L, D] over a quantized cache, computed as mlx-lm 0.32's
// quantized_scaled_dot_product_attention (scale the queries, quantized_matmul with the keys, mask,
// precise softmax, quantized_matmul with the values; GQA by broadcasting the kv heads).
mlx::core::array quantized_attention(const mlx::core::array& queries, const QuantizedTensor& keys,
                                     const QuantizedTensor& values, float scale, const AttentionMask& mask,
                                     int group_size, int bits);

// mlx-lm generate.py maybe_quantize_kv_cache: every StandardKVCache whose offset has reached
// `quantized_kv_start` is replaced by its quantized form (other caches are left alone).
void maybe_quantize_kv_caches(KVCacheList& caches, int quantized_kv_start, int group_size, int bits);

}  // namespace mlxgp
