// The AVX2 building blocks of decode attention (decode_attention.cpp): R query heads that share a KV
// head against keys and values stored as rows of D floats, in place in a float cache or dequantized from a
// quantized one. x86-64 only.
#pragma once

#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/simd_exp.h"

namespace mlxgp::kernels::decode_heads {

// Four dot products' lanes summed into their four totals: lanes 0+1 and 2+3 paired, the pairs added, then
// the two 128-bit halves. (A key outside the blocks of eight is summed by hsum8, in another order; which
// keys those are depends only on the row's first visible key.)
MLXGP_SIMD_EXP_AVX2 inline __m128 reduce4x8(const __m256* a) {
  const __m256 lo = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  return _mm_add_ps(_mm256_castps256_ps128(lo), _mm256_extractf128_ps(lo, 1));
}

// Rows [j, j + n) of a head's keys (or values), D floats each, into L2 (prefetch.h's reason: a batch's
// KV cache streams from DRAM). Keys are asked for a few rows ahead of the scores, and the values of the
// same rows beside them, so the weighted sum that follows reads them from L2. Default GGUF, int8
// activations, batch 8, 256 new tokens: 394 -> 410 tok/s.
inline void prefetch_rows(const float* base, int64_t stride, int j, int n, int D) {
  for (int i = j; i < j + n; ++i)
    for (int d = 0; d < D; d += 16) _mm_prefetch(reinterpret_cast<const char*>(base + i * stride + d), _MM_HINT_T1);
}
constexpr int kKeysAhead = 32;

// scores[r * ld + j] = scale * q_r . k_j for R query heads sharing one KV head (q_r D floats apart) over
// keys j in [0, n) (key j at kb + j * kstride). Each key chunk is loaded once for all R heads: loads from
// L2, not the multiply-adds, bounded the one-head-at-a-time loop. Per head the arithmetic is unchanged:
// blocks of eight keys (two halves of four, reduce4x8), one lane vector per key, the rest one key at a
// time (hsum8). With `vb`, prefetches keys ahead and the values of the same positions (prefetch_rows).
template <int R>
MLXGP_SIMD_EXP_AVX2 void score_keys(const float* q, const float* kb, int64_t kstride, int n, int D, float scale,
                                    float* scores, int64_t ld, const float* vb, int64_t vstride) {
  const __m256 vscale = _mm256_set1_ps(scale);
  int j = 0;
  if (vb) prefetch_rows(kb, kstride, j, std::min(kKeysAhead, n - j), D);
  for (; j + 8 <= n; j += 8) {
    if (vb) {
      if (j + kKeysAhead < n) prefetch_rows(kb, kstride, j + kKeysAhead, std::min(8, n - j - kKeysAhead), D);
      prefetch_rows(vb, vstride, j, 8, D);
    }
    for (int half = 0; half < 8; half += 4) {
      __m256 acc[R][4];
      for (int r = 0; r < R; ++r)
        for (int i = 0; i < 4; ++i) acc[r][i] = _mm256_setzero_ps();
      const float* k0 = kb + (j + half) * kstride;
      for (int d = 0; d < D; d += 8) {
        for (int i = 0; i < 4; ++i) {
          const __m256 kv = _mm256_loadu_ps(k0 + i * kstride + d);
          for (int r = 0; r < R; ++r) acc[r][i] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * D + d), kv, acc[r][i]);
        }
      }
      for (int r = 0; r < R; ++r)
        _mm_storeu_ps(scores + r * ld + j + half, _mm_mul_ps(reduce4x8(acc[r]), _mm256_castps256_ps128(vscale)));
    }
  }
  for (; j < n; ++j) {
    for (int r = 0; r < R; ++r) {
      __m256 acc = _mm256_setzero_ps();
      for (int d = 0; d < D; d += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * D + d), _mm256_loadu_ps(kb + j * kstride + d), acc);
      scores[r * ld + j] = simd::hsum8(acc) * scale;
    }
  }
}

// s[0:n) <- exp(s - max); returns the sum (and the max in *max_out).
MLXGP_SIMD_EXP_AVX2 inline float exp_sum(float* s, int n, float* max_out = nullptr) {
  float m = -INFINITY;
  for (int j = 0; j < n; ++j) m = std::max(m, s[j]);
  const __m256 mv = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = simd::exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
    _mm256_storeu_ps(s + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  float sum = simd::hsum8(acc);
  for (; j < n; ++j) sum += s[j] = std::exp(s[j] - m);
  if (max_out) *max_out = m;
  return sum;
}

// acc_r[d0, d0 + 8 W) += sum_j p_r[j] v_j[d0, ...) over j in [0, n) for R heads (p_r ld apart, acc_r D
// apart; v_j at vb + j * vstride), the R x W sums in registers over the keys; each value chunk is loaded
// once for all R heads. `fresh`: start from 0 instead of acc (the same bits as adding to zeros).
template <int R, int W>
MLXGP_SIMD_EXP_AVX2 void add_weighted_values(const float* p, int64_t ld, int n, const float* vb, int64_t vstride,
                                             int d0, float* acc_out, int D, bool fresh) {
  __m256 acc[R][W];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < W; ++c) acc[r][c] = fresh ? _mm256_setzero_ps() : _mm256_loadu_ps(acc_out + r * D + d0 + 8 * c);
  for (int j = 0; j < n; ++j) {
    const float* vj = vb + j * vstride + d0;
    __m256 v[W];
    for (int c = 0; c < W; ++c) v[c] = _mm256_loadu_ps(vj + 8 * c);
    for (int r = 0; r < R; ++r) {
      const __m256 pj = _mm256_set1_ps(p[r * ld + j]);
      for (int c = 0; c < W; ++c) acc[r][c] = _mm256_fmadd_ps(pj, v[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < W; ++c) _mm256_storeu_ps(acc_out + r * D + d0 + 8 * c, acc[r][c]);
}

// acc_r[d0 ...) for every d0 of the head (16 floats at a time, then 8).
template <int R>
inline void add_weighted_rows(const float* p, int64_t ld, int n, const float* vb, int64_t vstride, float* acc, int D,
                              bool fresh) {
  int d0 = 0;
  for (; d0 + 16 <= D; d0 += 16) add_weighted_values<R, 2>(p, ld, n, vb, vstride, d0, acc, D, fresh);
  for (; d0 < D; d0 += 8) add_weighted_values<R, 1>(p, ld, n, vb, vstride, d0, acc, D, fresh);
}

// o_r = acc_r * mult_r over D floats for R heads (o_r and acc_r D apart; o may be acc).
template <int R>
MLXGP_SIMD_EXP_AVX2 void scale_rows(const float* acc, const float* mult, float* o, int D) {
  for (int r = 0; r < R; ++r) {
    const __m256 m = _mm256_set1_ps(mult[r]);
    for (int d = 0; d < D; d += 8) _mm256_storeu_ps(o + r * D + d, _mm256_mul_ps(_mm256_loadu_ps(acc + r * D + d), m));
  }
}

}  // namespace mlxgp::kernels::decode_heads

#endif
