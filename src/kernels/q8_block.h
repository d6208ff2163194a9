// What both int8-activation kernel files share (ggml_q8.cpp: blocks as stored; ggml_q8_packed.cpp: rows
// interleaved 16 at a time): the target attribute, the VNNI check and the quantization of one block of
// activations, so both round the activations alike.
#pragma once

#if defined(__x86_64__)

#include <immintrin.h>

#include <cfloat>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/ggml_blocks.h"

#define MLXGP_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")))

// Every int8 kernel must round the same products and sums, so that each output is one float sequence
// (ggml_q8.h): no fused multiply-adds the source does not write, in the includer's code that follows too.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace mlxgp::kernels::q8 {

inline bool machine_has_vnni() {
  static const bool v = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") != 0;
  }();
  return v;
}

// vpdpbusd of 16 lanes of 4 unsigned weight bytes with 4 activation bytes as an embedded broadcast
// ({1to16}), which GCC does not emit from intrinsics; a separate broadcast costs a third of the
// throughput on Zen 4.
MLXGP_VNNI inline __m512i dot(__m512i acc, __m512i w, const int8_t* x) {
  __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(x)));
  return acc;
}

// The IQ4 grid (kIq4NlValues) + 128 in each 128-bit lane, for a byte shuffle by code: the value as the
// unsigned byte vpdpbusd multiplies (the grid is signed, -127 .. 113; the kernels take 128 times the
// activations' sums back off).
MLXGP_VNNI inline __m512i iq4_grid_u8() {
  return _mm512_broadcast_i32x4(_mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4NlValues)),
                                              _mm_set1_epi8(static_cast<char>(0x80))));
}

// One block of 32: quantize_row_q8_1's x86 arithmetic (id = 127 / amax, round to nearest even; d and
// s = d * sum(q) stored as halves, so used rounded to half). A non-finite input makes d NaN, so the
// products are NaN as in float32.
MLXGP_VNNI inline void quantize_block(const float* x, int8_t* q, float& d, float& s, int32_t& sum) {
  const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
  const __m512 aa = _mm512_abs_ps(a), ab = _mm512_abs_ps(b);
  const __mmask16 bad = _mm512_cmp_ps_mask(aa, _mm512_set1_ps(FLT_MAX), _CMP_NLE_UQ) |
                        _mm512_cmp_ps_mask(ab, _mm512_set1_ps(FLT_MAX), _CMP_NLE_UQ);
  if (bad) {
    std::memset(q, 0, 32);
    d = s = std::numeric_limits<float>::quiet_NaN();
    sum = 0;
    return;
  }
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(aa, ab));
  const __m512 id = _mm512_set1_ps(amax > 0.f ? 127.f / amax : 0.f);
  const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, id)), qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, id));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtepi32_epi8(qa));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtepi32_epi8(qb));
  const float d32 = amax / 127.f;
  sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
  d = _cvtsh_ss(_cvtss_sh(d32, _MM_FROUND_TO_NEAREST_INT));
  s = _cvtsh_ss(_cvtss_sh(d32 * static_cast<float>(sum), _MM_FROUND_TO_NEAREST_INT));
}

}  // namespace mlxgp::kernels::q8

#endif
