// The product both llama.cpp block primitives (ggml_matmul.cpp, ggml_gather.cpp) run on the CPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <mlx/array.h>

namespace mlxgp::kernels {

// out[m, n] = x[m] . dequantize(w[n]) for M rows of x (row-major [M, K], 64-byte aligned) and N rows of
// blocks (row_bytes apart); out is [M, N]. The fused AVX-512 decoders where they run (a row's result is
// the same at any M), else dequantized tiles through the dense row kernel. Threads over N. With
// int8_activations, llama.cpp's arithmetic instead (ggml_q8.h; callers check ggml_q8_supported first).
void ggml_product(uint32_t type, const float* x, int M, int K, const uint8_t* w, int N, size_t row_bytes, float* out,
                  bool int8_activations = false);

// One weight of a multi-weight product: N rows of blocks row_bytes apart; out is its [M, N] result.
struct GgmlSegment {
  const uint8_t* w;
  int N;
  size_t row_bytes;
  float* out;
};
// out_s = x . dequantize(w_s) for every segment (same type and K), in one parallel pass over all their rows
// (q, k and v of one input; gate and up). Each output equals ggml_product's for that weight bit for bit.
void ggml_product(uint32_t type, const float* x, int M, int K, const std::vector<GgmlSegment>& segs,
                  bool int8_activations = false);

// The segments' rows laid end to end: their total, and fn(segment, n0, n1) for each segment's share of
// the rows [g0, g1) one thread took (n0, n1 within that segment).
inline int total_rows(const std::vector<GgmlSegment>& segs) {
  int total = 0;
  for (const auto& sg : segs) total += sg.N;
  return total;
}
template <class Fn>
void for_segment_rows(const std::vector<GgmlSegment>& segs, int g0, int g1, Fn&& fn) {
  int base = 0;
  for (const auto& sg : segs) {
    const int n0 = (g0 > base ? g0 : base) - base, n1 = (g1 < base + sg.N ? g1 : base + sg.N) - base;
    base += sg.N;
    if (n0 < n1) fn(sg, n0, n1);
  }
}

// Whether the block product of M activation rows runs on the CPU primitive (ggml_matmul.cpp); otherwise the
// weight is dequantized and BLAS or the device multiplies.
bool ggml_cpu_product(uint32_t type, int64_t M, bool int8_activations);

// Throws std::invalid_argument when int8_activations is set and ggml_q8_supported(type) is not.
void check_int8_activations(uint32_t type, bool int8_activations);

// Throws std::invalid_argument unless w is uint8 rows of blocks of `type` holding K values each.
void check_ggml_blocks(const mlx::core::array& w, uint32_t type, int K);

}  // namespace mlxgp::kernels
