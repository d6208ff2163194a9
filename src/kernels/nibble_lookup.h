// 4-bit weights by table lookup (AVX-512): a block's or group's 16 possible weights are computed once, with
// the arithmetic a per-weight decode does, and vpermps picks each weight by its code. That replaces a mask,
// a conversion and an FMA per 16 weights; a batch-1 row kernel is bound by that decode on the shuffle and
// FMA ports, not by memory (2-core Xeon: default GGUF float decode 138 -> 145 tok/s by the lookups alone,
// about 180 with ggml_rows.cpp's gathered scales; 4-bit MLX folder 121 -> 131-140). Each looked-up weight
// is bit-identical to the decoded one.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

namespace mlxgp::kernels {

#define MLXGP_NIBBLE_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")))

// 0, 1, .., 15 as floats: the codes whose weights a table holds.
MLXGP_NIBBLE_AVX512 inline __m512 nibble_codes() {
  return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

// 16 bytes q: w0 takes the weights of their low nibbles, w1 of their high ones. Only bits 0-3 of a vpermps
// index count, so neither needs a mask.
MLXGP_NIBBLE_AVX512 inline void nibble_weights(__m128i q, __m512 table, __m512& w0, __m512& w1) {
  const __m512i v = _mm512_cvtepu8_epi32(q);
  w0 = _mm512_permutexvar_ps(v, table);
  w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
}

}  // namespace mlxgp::kernels

#endif
