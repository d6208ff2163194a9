#include "kernels/qmm_cpu.h"
#include "kernels/fp_formats.h"
#include "kernels/nibble_lookup.h"
#include "kernels/prefetch.h"
#include "kernels/row_blocks.h"
#include "kernels/simd_exp.h"

#include <algorithm>
#include <cstddef>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <mlx/types/half_types.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace mx = mlx::core;

// GCC 12 flags the intentionally undefined lanes inside its own AVX-512 intrinsics headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace mlxgp::kernels {

namespace {

inline float load_scale(const void* p, int i, ScaleType t) {
  switch (t) {
    case ScaleType::f32:
      return static_cast<const float*>(p)[i];
    case ScaleType::f16:
      return static_cast<float>(static_cast<const mlx::core::float16_t*>(p)[i]);
    case ScaleType::bf16:
      return static_cast<float>(static_cast<const mlx::core::bfloat16_t*>(p)[i]);
    case ScaleType::e8m0:
      return e8m0_scale(static_cast<const uint8_t*>(p)[i]);
    case ScaleType::e4m3:
      return e4m3_value(static_cast<const uint8_t*>(p)[i]);
  }
  return 0.0f;
}

// Elements per SIMD block whose 4-bit codes are unpacked together (see prepare_x).
int q4_block(Isa isa) { return isa == Isa::avx512 ? 32 : isa == Isa::avx2 ? 16 : 0; }

// Code k of a packed row: MLX packs a row as one little-endian bit stream (k at bit k * bits), so
// a 5-bit code may straddle two words.
inline uint32_t code_at(const uint32_t* w, int k, int bits) {
  const size_t bit = static_cast<size_t>(k) * bits;
  uint64_t v = w[bit / 32];
  if (bit % 32 + bits > 32) v |= static_cast<uint64_t>(w[bit / 32 + 1]) << 32;
  return static_cast<uint32_t>(v >> (bit % 32)) & ((1u << bits) - 1);
}

void rows_portable(const QmmArgs& a, const float* x, int n0, int n1) {
  const int groups = a.K / a.group_size, wpr = a.K * a.bits / 32;
  for (int n = n0; n < n1; ++n) {
    const uint32_t* w = a.w + static_cast<size_t>(n) * wpr;
    for (int m = 0; m < a.M; ++m) {
      const float* xm = x + static_cast<size_t>(m) * a.K;
      float acc = 0.0f;
      const bool fp = microscaling(a.scale_type);
      for (int g = 0; g < groups; ++g) {
        const float s = load_scale(a.scales, n * groups + g, a.scale_type);
        const float b = fp ? 0.0f : load_scale(a.biases, n * groups + g, a.scale_type);
        float qx = 0.0f, xs = 0.0f;
        for (int k = g * a.group_size; k < (g + 1) * a.group_size; ++k) {
          const uint32_t c = code_at(w, k, a.bits);
          const float q = !fp ? static_cast<float>(c) : a.bits == 4 ? kE2m1[c] : e4m3_value(static_cast<uint8_t>(c));
          qx += q * xm[k];
          xs += xm[k];
        }
        acc += s * qx + b * xs;
      }
      a.out[static_cast<size_t>(m) * a.N + n] = acc;
    }
  }
}

#if defined(__x86_64__)

#define MLXGP_AVX2 __attribute__((target("avx2,fma,f16c")))
#define MLXGP_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")))

// Groups per 32-element SIMD step of the AVX-512 kernels: nvfp4's groups of 16 come two at a time (its K is a
// multiple of 32 there: quantized_matmul_supported), every other format's groups are 32 or more.
template <ScaleType ST>
inline constexpr int kGroupsPerStep = ST == ScaleType::e4m3 ? 2 : 1;

// One scale/bias per group; 16-bit ones are widened with F16C / a shift (the generic
// mx::float16_t conversion is a software routine and would dominate the kernel).
template <ScaleType ST>
MLXGP_AVX2 inline float scale_at(const void* p, size_t i) {
  if constexpr (ST == ScaleType::f32) {
    return static_cast<const float*>(p)[i];
  } else if constexpr (ST == ScaleType::e8m0) {
    return e8m0_scale(static_cast<const uint8_t*>(p)[i]);
  } else if constexpr (ST == ScaleType::e4m3) {
    return e4m3_value(static_cast<const uint8_t*>(p)[i]);
  } else if constexpr (ST == ScaleType::f16) {
    return _cvtsh_ss(static_cast<const uint16_t*>(p)[i]);
  } else {
    const uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t*>(p)[i]) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
}

// 8 five-bit codes (5 bytes) -> 8 int32 lanes. Codes 0..5 lie in the low 32 bits, 6 and 7 in the
// 32 bits from bit 8, so one variable shift per lane extracts them.
MLXGP_AVX2 inline __m256i unpack8_5bit(const uint8_t* p) {
  // Two overlapping 4-byte loads (bytes 0-3 and 1-4): never past the 5 bytes of the pack.
  uint32_t lo32, hi32;
  std::memcpy(&lo32, p, 4);
  std::memcpy(&hi32, p + 1, 4);
  const __m256i lo = _mm256_set1_epi32(static_cast<int>(lo32));
  const __m256i hi = _mm256_set1_epi32(static_cast<int>(hi32));
  const __m256i src = _mm256_blend_epi32(lo, hi, 0xC0);
  return _mm256_and_si256(_mm256_srlv_epi32(src, _mm256_setr_epi32(0, 5, 10, 15, 20, 25, 22, 27)),
                          _mm256_set1_epi32(31));
}

// mxfp8's e4m3 codes (int32 lanes 0-255) as floats, as e4m3_value decodes them: a normal code's exponent and
// mantissa placed in float's fields and rebased by 2^120, a subnormal's m * 2^-9, S.1111.111 NaN, the sign last.
MLXGP_AVX2 inline __m256 e4m3_8(__m256i v) {
  const __m256i em = _mm256_and_si256(v, _mm256_set1_epi32(0x7F));
  __m256 w = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(em, 20), _mm256_set1_epi32(120 << 23)));
  const __m256 sub = _mm256_mul_ps(_mm256_cvtepi32_ps(em), _mm256_set1_ps(0x1p-9f));
  w = _mm256_blendv_ps(w, sub, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(8), em)));
  w = _mm256_blendv_ps(w, _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN()),
                       _mm256_castsi256_ps(_mm256_cmpeq_epi32(em, _mm256_set1_epi32(0x7F))));
  return _mm256_or_ps(w, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(v, _mm256_set1_epi32(0x80)), 24)));
}

// MB activation rows at once, so each dequantized weight vector is reused MB times.
template <int MB, int BITS, ScaleType ST>
MLXGP_AVX2 void rows_avx2(const QmmArgs& a, const float* xp, int m0, int n0, int n1) {
  const int groups = a.K / a.group_size;
  const size_t bytes_per_row = static_cast<size_t>(a.K) * BITS / 8;
  const float* xr = xp + static_cast<size_t>(m0) * a.K;
  const __m256i low4 = _mm256_set1_epi32(0xF);
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wb = reinterpret_cast<const uint8_t*>(a.w) + n * bytes_per_row;
    __m256 acc[MB][2];
    for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
    for (int g = 0; g < groups; ++g) {
      const size_t gi = static_cast<size_t>(n) * groups + g;
      const __m256 vs = _mm256_set1_ps(scale_at<ST>(a.scales, gi));
      [[maybe_unused]] const __m256 vb =
          microscaling(ST) ? _mm256_setzero_ps() : _mm256_set1_ps(scale_at<ST>(a.biases, gi));
      // e2m1: the magnitudes of codes 0-7 times the scale, by code & 7; bit 3 (the sign) flips the sign bit.
      [[maybe_unused]] const __m256 t8 = _mm256_mul_ps(_mm256_loadu_ps(kE2m1), vs);
      for (int k = g * a.group_size; k < (g + 1) * a.group_size; k += 16) {
        __m256 w0, w1;
        if constexpr (microscaling(ST) && BITS == 8) {
          w0 = _mm256_mul_ps(e4m3_8(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(wb + k)))),
                             vs);
          w1 = _mm256_mul_ps(
              e4m3_8(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(wb + k + 8)))), vs);
        } else if constexpr (microscaling(ST)) {
          const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(wb + k / 2)));
          const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_srli_epi32(v, 4);
          const __m256i sign = _mm256_set1_epi32(8);
          w0 = _mm256_xor_ps(_mm256_permutevar8x32_ps(t8, lo),
                             _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(lo, sign), 28)));
          w1 = _mm256_xor_ps(_mm256_permutevar8x32_ps(t8, hi),
                             _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(hi, sign), 28)));
        } else if constexpr (BITS == 4) {
          // 8 bytes hold 16 codes: low nibbles are the even elements, high nibbles the odd ones.
          __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(wb + k / 2)));
          w0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, low4)), vs, vb);
          w1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4)), vs, vb);
        } else if constexpr (BITS == 5) {
          w0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(unpack8_5bit(wb + k / 8 * 5)), vs, vb);
          w1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(unpack8_5bit(wb + k / 8 * 5 + 5)), vs, vb);
        } else {
          __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(wb + k)));
          __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(wb + k + 8)));
          w0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v0), vs, vb);
          w1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v1), vs, vb);
        }
        for (int m = 0; m < MB; ++m) {
          const float* xm = xr + static_cast<size_t>(m) * a.K + k;
          acc[m][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xm), acc[m][0]);
          acc[m][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xm + 8), acc[m][1]);
        }
      }
    }
    for (int m = 0; m < MB; ++m)
      a.out[static_cast<size_t>(m0 + m) * a.N + n] = simd::hsum8(_mm256_add_ps(acc[m][0], acc[m][1]));
  }
}

MLXGP_AVX512 inline __m512i unpack16_5bit(const uint8_t* p) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(unpack8_5bit(p)), unpack8_5bit(p + 5), 1);
}

// 32 codes of one weight row from element k as int32 lanes. NATURAL: in element order; otherwise in the
// prepared x layout (which only the 4-bit codes change, and the 4-bit row kernel looks its weights up).
template <int BITS, bool NATURAL>
MLXGP_AVX512 inline void codes32(const uint8_t* wb, int k, __m512i& c0, __m512i& c1) {
  static_assert(BITS != 4 || NATURAL, "4-bit rows read their codes through nibble_weights");
  if constexpr (BITS == 4) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + k / 2));
    const __m128i low4 = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(b, low4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), low4);
    c0 = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
    c1 = _mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo, hi));
  } else if constexpr (BITS == 5) {
    c0 = unpack16_5bit(wb + k / 8 * 5);
    c1 = unpack16_5bit(wb + k / 8 * 5 + 10);
  } else {
    c0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + k)));
    c1 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + k + 16)));
  }
}

// e4m3_8 on 16 lanes.
MLXGP_AVX512 inline __m512 e4m3_16(__m512i v) {
  const __m512i em = _mm512_and_si512(v, _mm512_set1_epi32(0x7F));
  __m512 w = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_slli_epi32(em, 20), _mm512_set1_epi32(120 << 23)));
  w = _mm512_mask_mul_ps(w, _mm512_cmplt_epi32_mask(em, _mm512_set1_epi32(8)), _mm512_cvtepi32_ps(em),
                         _mm512_set1_ps(0x1p-9f));
  w = _mm512_mask_mov_ps(w, _mm512_cmpeq_epi32_mask(em, _mm512_set1_epi32(0x7F)),
                         _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()));
  return _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_castps_si512(w), _mm512_slli_epi32(_mm512_and_si512(v, _mm512_set1_epi32(0x80)), 24)));
}

// Those 32 codes dequantized (scale * q + bias; FP8: scale * e4m3(q)), in the prepared x layout (5- and 8-bit
// rows).
template <int BITS, bool FP8 = false>
MLXGP_AVX512 inline void dequant32(const uint8_t* wb, int k, __m512 vs, __m512 vb, __m512& w0, __m512& w1) {
  __m512i c0, c1;
  codes32<BITS, false>(wb, k, c0, c1);
  if constexpr (FP8) {
    w0 = _mm512_mul_ps(e4m3_16(c0), vs);
    w1 = _mm512_mul_ps(e4m3_16(c1), vs);
    return;
  }
  w0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c0), vs, vb);
  w1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c1), vs, vb);
}

// MB activation rows times NB weight rows per pass: each dequantized weight vector is reused MB times and
// each loaded activation vector NB times. Every (row, output) keeps its own even/odd accumulator pair, so
// a row's result is bit-identical whatever MB and NB (a batch row equals its solo run).
template <int MB, int NB, int BITS, ScaleType ST>
MLXGP_AVX512 void rows_avx512(const QmmArgs& a, const float* xp, int m0, int n0, int n1) {
  const int groups = a.K / a.group_size;
  const size_t bytes_per_row = static_cast<size_t>(a.K) * BITS / 8;
  const float* xr = xp + static_cast<size_t>(m0) * a.K;
  int n = n0;
  for (; n + NB <= n1; n += NB) {
    const uint8_t* wb[NB];
    for (int j = 0; j < NB; ++j) wb[j] = reinterpret_cast<const uint8_t*>(a.w) + (n + j) * bytes_per_row;
    __m512 acc[MB][NB][2];
    for (int m = 0; m < MB; ++m)
      for (int j = 0; j < NB; ++j) acc[m][j][0] = acc[m][j][1] = _mm512_setzero_ps();
    for (int g = 0; g < groups; g += kGroupsPerStep<ST>) {
      __m512 vs[NB], vb[NB], t[NB];
      for (int j = 0; j < NB; ++j) {
        const size_t gi = static_cast<size_t>(n + j) * groups + g;
        vb[j] = microscaling(ST) ? _mm512_setzero_ps() : _mm512_set1_ps(scale_at<ST>(a.biases, gi));
        if constexpr (kGroupsPerStep<ST> == 2) {
          // nvfp4's groups of 16: each half of a 32-element step's lanes (low nibbles, then high) holds 8
          // elements of either group, so the looked-up e2m1 values take a scale per half.
          vs[j] = _mm512_insertf32x8(_mm512_set1_ps(scale_at<ST>(a.scales, gi)),
                                     _mm256_set1_ps(scale_at<ST>(a.scales, gi + 1)), 1);
          t[j] = _mm512_loadu_ps(kE2m1);
        } else {
          vs[j] = _mm512_set1_ps(scale_at<ST>(a.scales, gi));
          // 4-bit: the group's 16 possible weights, looked up by code (nibble_lookup.h).
          if constexpr (microscaling(ST) && BITS == 4) t[j] = _mm512_mul_ps(_mm512_loadu_ps(kE2m1), vs[j]);
          else if constexpr (BITS == 4) t[j] = _mm512_fmadd_ps(nibble_codes(), vs[j], vb[j]);
        }
      }
      for (int k = g * a.group_size; k < (g + kGroupsPerStep<ST>)*a.group_size; k += 32) {
        __m512 w[NB][2];
        for (int j = 0; j < NB; ++j) prefetch_ahead<4 * BITS>(wb[j] + k * BITS / 8);  // prefetch.h
        for (int j = 0; j < NB; ++j) {
          if constexpr (BITS == 4) {
            // In the prepared x layout: the low nibbles' elements, then the high ones'.
            nibble_weights(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb[j] + k / 2)), t[j], w[j][0], w[j][1]);
            if constexpr (kGroupsPerStep<ST> == 2) {
              w[j][0] = _mm512_mul_ps(w[j][0], vs[j]);
              w[j][1] = _mm512_mul_ps(w[j][1], vs[j]);
            }
          } else {
            dequant32<BITS, microscaling(ST)>(wb[j], k, vs[j], vb[j], w[j][0], w[j][1]);
          }
        }
        for (int m = 0; m < MB; ++m) {
          const float* xm = xr + static_cast<size_t>(m) * a.K + k;
          __m512 x0 = _mm512_loadu_ps(xm), x1 = _mm512_loadu_ps(xm + 16);
          // Keep them in registers: GCC otherwise folds the load into every FMA, so each weight row
          // reloads them and the loads, not the FMAs, bound the kernel (Zen 4: one zmm load a cycle).
          if constexpr (NB > 1) __asm__("" : "+v"(x0), "+v"(x1));
          for (int j = 0; j < NB; ++j) {
            acc[m][j][0] = _mm512_fmadd_ps(w[j][0], x0, acc[m][j][0]);
            acc[m][j][1] = _mm512_fmadd_ps(w[j][1], x1, acc[m][j][1]);
          }
        }
      }
    }
    for (int m = 0; m < MB; ++m)
      for (int j = 0; j < NB; ++j)
        a.out[static_cast<size_t>(m0 + m) * a.N + n + j] =
            _mm512_reduce_add_ps(_mm512_add_ps(acc[m][j][0], acc[m][j][1]));
  }
  if constexpr (NB > 1)
    if (n < n1) rows_avx512<MB, 1, BITS, ST>(a, xp, m0, n, n1);
}

template <int BITS, ScaleType ST>
void rows_x86(const QmmArgs& a, const float* xp, int n0, int n1, Isa isa) {
  const size_t row_bytes = static_cast<size_t>(a.K) * BITS / 8;
  // AVX-512 has the registers for 8 rows (16 accumulators): a batch dequantizes each weight once per 8.
  if (isa == Isa::avx512) {
    // 4-bit codes unpack cheaply, so with 4+ rows the kernel is bound by activation loads: two weight rows
    // per pass halve them (8 x 576 x 1536 from memory: 23.5 -> 28.7 GMAC/s a core). 5- and 8-bit rows,
    // and single rows, dequantize at a higher cost per load and lose by it (measured on Zen 4).
    if (BITS == 4 && a.M >= 4) {
      for_weight_tiles<4>(a.M, n0, n1, row_bytes, 16 * 1024, [&](int m0, auto mbc, int t0, int t1) {
        rows_avx512<decltype(mbc)::value, 2, BITS, ST>(a, xp, m0, t0, t1);
      });
      return;
    }
    for_weight_tiles<8>(a.M, n0, n1, row_bytes, 16 * 1024, [&](int m0, auto mbc, int t0, int t1) {
      rows_avx512<decltype(mbc)::value, 1, BITS, ST>(a, xp, m0, t0, t1);
    });
    return;
  }
  for_weight_tiles(a.M, n0, n1, row_bytes, 16 * 1024, [&](int m0, auto mbc, int t0, int t1) {
    rows_avx2<decltype(mbc)::value, BITS, ST>(a, xp, m0, t0, t1);
  });
}

// One weight row in natural order, 32 codes at a time.
template <int BITS, ScaleType ST>
MLXGP_AVX512 void dequant_row_avx512(const QmmArgs& a, int n, float* out) {
  const int groups = a.K / a.group_size;
  const uint8_t* wb = reinterpret_cast<const uint8_t*>(a.w) + static_cast<size_t>(n) * a.K * BITS / 8;
  for (int g = 0; g < groups; g += kGroupsPerStep<ST>) {
    const size_t gi = static_cast<size_t>(n) * groups + g;
    const __m512 vs = _mm512_set1_ps(scale_at<ST>(a.scales, gi));
    [[maybe_unused]] const __m512 vb =
        microscaling(ST) ? _mm512_setzero_ps() : _mm512_set1_ps(scale_at<ST>(a.biases, gi));
    // e2m1 by code (microscaling): the 16 lanes of c0 and of c1 each lie in one group.
    [[maybe_unused]] const __m512 t0 = _mm512_mul_ps(_mm512_loadu_ps(kE2m1), vs);
    [[maybe_unused]] const __m512 t1 =
        kGroupsPerStep<ST> == 2 ? _mm512_mul_ps(_mm512_loadu_ps(kE2m1), _mm512_set1_ps(scale_at<ST>(a.scales, gi + 1)))
                                : t0;
    for (int k = g * a.group_size; k < (g + kGroupsPerStep<ST>)*a.group_size; k += 32) {
      __m512i c0, c1;
      codes32<BITS, true>(wb, k, c0, c1);
      if constexpr (microscaling(ST) && BITS == 8) {
        _mm512_storeu_ps(out + k, _mm512_mul_ps(e4m3_16(c0), vs));
        _mm512_storeu_ps(out + k + 16, _mm512_mul_ps(e4m3_16(c1), vs));
      } else if constexpr (microscaling(ST)) {
        _mm512_storeu_ps(out + k, _mm512_permutexvar_ps(c0, t0));
        _mm512_storeu_ps(out + k + 16, _mm512_permutexvar_ps(c1, t1));
      } else {
        _mm512_storeu_ps(out + k, _mm512_fmadd_ps(_mm512_cvtepi32_ps(c0), vs, vb));
        _mm512_storeu_ps(out + k + 16, _mm512_fmadd_ps(_mm512_cvtepi32_ps(c1), vs, vb));
      }
    }
  }
}

#endif  // __x86_64__

}  // namespace

namespace {
std::atomic<int> g_isa_cap{2};  // highest Isa the kernels may use (tests lower it)
}

void cap_isa(Isa isa) { g_isa_cap.store(static_cast<int>(isa)); }

bool kernels_disabled() {
  // MLXGP_DISABLE_KERNELS=1 routes everything to MLX's own ops (before/after measurements).
  static const bool off = [] {
    const char* e = std::getenv("MLXGP_DISABLE_KERNELS");
    return e && *e && std::string(e) != "0";
  }();
  return off;
}

Isa detect_isa() { return static_cast<Isa>(std::min(static_cast<int>(machine_isa()), g_isa_cap.load())); }

Isa machine_isa() {
#if defined(__x86_64__)
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
      return Isa::avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
    return Isa::portable;
  }();
  return isa;
#else
  return Isa::portable;
#endif
}

int prepared_x_floats(const QmmArgs& a) { return a.M * a.K; }

void prepare_x(const QmmArgs& a, Isa isa, float* xp) {
  const int blk = a.bits == 4 ? q4_block(isa) : 0;
  if (blk == 0) {
    std::memcpy(xp, a.x, sizeof(float) * static_cast<size_t>(a.M) * a.K);
    return;
  }
  for (int m = 0; m < a.M; ++m) {
    const float* src = a.x + static_cast<size_t>(m) * a.K;
    float* dst = xp + static_cast<size_t>(m) * a.K;
    for (int k0 = 0; k0 < a.K; k0 += blk)
      for (int j = 0; j < blk / 2; ++j) {
        dst[k0 + j] = src[k0 + 2 * j];
        dst[k0 + blk / 2 + j] = src[k0 + 2 * j + 1];
      }
  }
}

namespace {

// fn(std::integral_constant<ScaleType, T>{}) for a's scale type T: the kernels take it as a template
// argument, so the widening of 16-bit scales is resolved at compile time.
template <class Fn>
void with_scale_type(const QmmArgs& a, Fn&& fn) {
  switch (a.scale_type) {
    case ScaleType::f32:
      fn(std::integral_constant<ScaleType, ScaleType::f32>{});
      return;
    case ScaleType::f16:
      fn(std::integral_constant<ScaleType, ScaleType::f16>{});
      return;
    case ScaleType::bf16:
      fn(std::integral_constant<ScaleType, ScaleType::bf16>{});
      return;
    case ScaleType::e8m0:
      fn(std::integral_constant<ScaleType, ScaleType::e8m0>{});
      return;
    case ScaleType::e4m3:
      fn(std::integral_constant<ScaleType, ScaleType::e4m3>{});
      return;
  }
}

}  // namespace

void dequantize_rows(const QmmArgs& a, float* out, int n0, int n1, Isa isa) {
#if defined(__x86_64__)
  if (isa == Isa::avx512) {
    with_scale_type(a, [&](auto st) {
      constexpr ScaleType ST = decltype(st)::value;
      for (int n = n0; n < n1; ++n) {
        float* row = out + static_cast<size_t>(n) * a.K;
        if constexpr (microscaling(ST)) {  // 4 bits (e2m1) or 8 (mxfp8's e4m3)
          if (a.bits == 8) dequant_row_avx512<8, ST>(a, n, row);
          else dequant_row_avx512<4, ST>(a, n, row);
        } else if (a.bits == 4) dequant_row_avx512<4, ST>(a, n, row);
        else if (a.bits == 5) dequant_row_avx512<5, ST>(a, n, row);
        else dequant_row_avx512<8, ST>(a, n, row);
      }
    });
    return;
  }
#endif
  throw std::logic_error("[kernels] dequantize_rows needs AVX-512 (quantized_matmul only routes there with it)");
}

void qmm_rows(const QmmArgs& a, const float* xp, int n0, int n1, Isa isa) {
#if defined(__x86_64__)
  if (isa != Isa::portable) {
    with_scale_type(a, [&](auto st) {
      constexpr ScaleType ST = decltype(st)::value;
      if constexpr (microscaling(ST)) {  // 4 bits (e2m1) or 8 (mxfp8's e4m3)
        if (a.bits == 8) rows_x86<8, ST>(a, xp, n0, n1, isa);
        else rows_x86<4, ST>(a, xp, n0, n1, isa);
      } else if (a.bits == 4) rows_x86<4, ST>(a, xp, n0, n1, isa);
      else if (a.bits == 5) rows_x86<5, ST>(a, xp, n0, n1, isa);
      else rows_x86<8, ST>(a, xp, n0, n1, isa);
    });
    return;
  }
#endif
  rows_portable(a, xp, n0, n1);
}

}  // namespace mlxgp::kernels
