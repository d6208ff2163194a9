// The single-query attention over a KV cache's strided keys and values (decode_attention.cpp), for the
// primitives that run it: kernels::decode_attention and the fused decode layers (decode_layers.cpp).
#pragma once

#include <cstdint>
#include <vector>

namespace mlxgp::kernels {

struct DecodeArgs {
  const float* q = nullptr;  // [B, Hq, D] row-major
  const float* k = nullptr;  // element (b, h, j, d) at b * ks[0] + h * ks[1] + j * ks[2] + d
  const float* v = nullptr;
  int64_t ks[3] = {}, vs[3] = {};
  float* out = nullptr;  // [B, Hq, D]
  int Hq = 0, Hk = 0, Tk = 0, D = 0;
  float scale = 1.0f;
  const std::vector<int>* key_start = nullptr;  // per batch row: keys before it are hidden (may be empty)
};

// softmax(scale * q . k) v over keys [key_start[b], Tk) for every (batch row, KV head), on all threads.
void decode_attention_rows(const DecodeArgs& a, int B);

}  // namespace mlxgp::kernels
