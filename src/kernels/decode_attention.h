// The single-query attention over a KV cache's strided keys and values (decode_attention.cpp), for the
// primitives that run it: kernels::decode_attention and the fused decode layers (decode_layers.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <mlx/mlx.h>

#include "kernels/kernels.h"
#include "kernels/quantized_kv_rows.h"
#include "kernels/row_major.h"

namespace mlxgp::kernels {

// Keys or values [B, H, T, D] as rows of D contiguous floats (or float16 halves: `half`) at outer strides:
// the cache's strided view in place, or a row-major copy when the last axis is strided (never from our
// caches).
struct KvRows {
  const float* p = nullptr;
  const uint16_t* half = nullptr;
  int64_t st[3] = {};  // element (b, h, j, d) at b * st[0] + h * st[1] + j * st[2] + d
  std::optional<RowMajor<float>> copy;
  std::optional<RowMajor<uint16_t>> half_copy;
  explicit KvRows(const mlx::core::array& x) {
    const bool f16 = x.dtype() == mlx::core::float16;
    if (x.strides()[3] == 1) {
      if (f16) half = reinterpret_cast<const uint16_t*>(x.data<mlx::core::float16_t>());
      else p = x.data<float>();
      for (int i = 0; i < 3; ++i) st[i] = x.strides()[i];
      return;
    }
    if (f16) half = half_copy.emplace(x).ptr;
    else p = copy.emplace(x).ptr;
    st[2] = x.shape(3);
    st[1] = st[2] * x.shape(2);
    st[0] = st[1] * x.shape(1);
  }
  KvRows(const KvRows&) = delete;
  KvRows& operator=(const KvRows&) = delete;
};

struct DecodeArgs {
  const float* q = nullptr;  // [B, Hq, D] row-major
  const float* k = nullptr;  // element (b, h, j, d) at b * ks[0] + h * ks[1] + j * ks[2] + d
  const float* v = nullptr;
  int64_t ks[3] = {}, vs[3] = {};
  float* out = nullptr;  // [B, Hq, D]
  int Hq = 0, Hk = 0, Tk = 0, D = 0;
  float scale = 1.0f;
  const std::vector<int>* key_start = nullptr;  // per batch row: keys before it are hidden (may be empty)
  // A float16 cache (k and v unused; same strides): each task converts its rows to floats tile by tile.
  const uint16_t* k16 = nullptr;
  const uint16_t* v16 = nullptr;
  // A quantized cache (k and v unused): each task dequantizes its rows of keys and values first.
  const QuantizedRows* qk = nullptr;
  const QuantizedRows* qv = nullptr;
};

// softmax(scale * q . k) v over keys [key_start[b], Tk) for every (batch row, KV head), on all threads.
void decode_attention_rows(const DecodeArgs& a, int B);

// A quantized cache tensor's three arrays (t[0] data, t[1] scales, t[2] biases, last axes contiguous) as
// rows read in place.
QuantizedRows quantized_rows(const mlx::core::array* t, int bits, int group);
// What the quantized attention kernels take (decode and prefill): float32 queries [B, Hq, Tq, D] on the
// CPU, not traced, a cache of 2, 4 or 8 bits whose arrays match them, D a multiple of 8 and of the group.
bool quantized_attention_inputs_ok(const mlx::core::array& q, const QuantizedArrays& k, const QuantizedArrays& v,
                                   int group_size, int bits);

}  // namespace mlxgp::kernels
