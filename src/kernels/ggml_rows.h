// AVX-512 kernels over llama.cpp's block formats as stored (no repacking): a fused row kernel for
// out[m, n] = x[m] . dequantize(w[n]) and a row dequantizer. Each format decodes 32 consecutive weights
// at a time with ggml-quants.c's fp32 arithmetic (dequantize_row_*), so the dequantizer's output is the
// reference dequantization bit for bit and the row kernel multiplies exactly those weights.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mlxgp::kernels {

struct GgmlRowsArgs {
  const float* x = nullptr;    // [M, K] row-major, 64-byte aligned
  const uint8_t* w = nullptr;  // [N, row_bytes] blocks
  float* out = nullptr;        // [M, N]
  int M = 0, N = 0, K = 0;
  size_t row_bytes = 0;
};

// Whether the SIMD kernels below handle `type` on this machine (AVX-512 and a decoder for the type).
bool ggml_simd_supported(uint32_t type);

// Output rows [n0, n1) for every activation row. Requires ggml_simd_supported(type).
void ggml_rows(uint32_t type, const GgmlRowsArgs& a, int n0, int n1);

// Weight rows [r0, r1) of `w` (row_bytes apart) dequantized to fp32 rows of K values at out.
void ggml_dequantize_rows(uint32_t type, const uint8_t* w, size_t row_bytes, int K, float* out, int r0, int r1);

}  // namespace mlxgp::kernels
