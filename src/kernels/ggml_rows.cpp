// Each format is a decoder: head() reads a block's scales once, chunk<EXACT>(c) yields its weights
// 32c .. 32c + 31 as two vectors of 16. EXACT follows ggml-quants.c's (and gguf-py's) two roundings
// for "d * q + m" (the dequantizer); the row kernel fuses them into one FMA, which is as close to the
// real-number product and one instruction cheaper. Pure products (d * q) are the same either way.
#include "kernels/ggml_rows.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "kernels/ggml_blocks.h"
#include "kernels/nibble_lookup.h"
#include "kernels/prefetch.h"
#include "kernels/qmm_cpu.h"
#include "kernels/row_blocks.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// GCC 12 flags the intentionally undefined lanes inside its own AVX-512 intrinsics headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace mlxgp::kernels {

#if defined(__x86_64__)

namespace {

#define MLXGP_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")))

MLXGP_AVX512 inline float h2f(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return _cvtsh_ss(v);
}
MLXGP_AVX512 inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
MLXGP_AVX512 inline __m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
// Unsigned / signed bytes -> 16 floats.
MLXGP_AVX512 inline __m512 u8f(__m128i b) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)); }
MLXGP_AVX512 inline __m512 i8f(__m128i b) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)); }
MLXGP_AVX512 inline __m128i lo128(__m256i v) { return _mm256_castsi256_si128(v); }
MLXGP_AVX512 inline __m128i hi128(__m256i v) { return _mm256_extracti128_si256(v, 1); }
// The sub-block scales d * s of a K-quant head: 16 int32 s (or 8 bytes s) times the fp32 d, as ggml's
// scalar `d * s` does.
MLXGP_AVX512 inline __m512 to_f(__m512i s, float d) { return _mm512_mul_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(s)); }
MLXGP_AVX512 inline __m256 to_f8(const uint32_t* bytes8, float d) {
  const __m256i s = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes8)));
  return _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s));
}
// Bits [shift, shift + width) of every byte (a 16-bit shift, then a byte mask drops what crossed over).
MLXGP_AVX512 inline __m256i bits32(__m256i v, int shift, int mask) {
  return _mm256_and_si256(_mm256_srli_epi16(v, shift), _mm256_set1_epi8(static_cast<char>(mask)));
}
MLXGP_AVX512 inline __m128i bits16(__m128i v, int shift, int mask) {
  return _mm_and_si128(_mm_srli_epi16(v, shift), _mm_set1_epi8(static_cast<char>(mask)));
}

// q * d + m: ggml's two roundings when EXACT, else one FMA.
template <bool EXACT>
MLXGP_AVX512 inline __m512 affine(__m512 q, __m512 d, __m512 m) {
  if constexpr (EXACT) return _mm512_add_ps(_mm512_mul_ps(q, d), m);
  else return _mm512_fmadd_ps(q, d, m);
}
// d * q - m (the K-quants' form).
template <bool EXACT>
MLXGP_AVX512 inline __m512 affine_sub(__m512 d, __m512 q, __m512 m) {
  if constexpr (EXACT) return _mm512_sub_ps(_mm512_mul_ps(d, q), m);
  else return _mm512_fmsub_ps(d, q, m);
}

// block_q4_0: half d; qs[16] (element j in the low nibble of qs[j], j + 16 in the high one).
struct Q4_0 {
  static constexpr int kElems = 32, kBytes = 18, kHalves = 1;  // kHalves: see gather_halves
  struct Head {
    __m512 t;  // the 16 weights a nibble can stand for, (q - 8) * d (nibble_lookup.h)
  };
  MLXGP_AVX512 static Head head(const uint8_t* b) { return head_of(h2f(b)); }
  MLXGP_AVX512 static Head head_at(const float* s) { return head_of(*s); }
  MLXGP_AVX512 static Head head_of(float d) {
    return {_mm512_mul_ps(_mm512_sub_ps(nibble_codes(), _mm512_set1_ps(8.0f)), _mm512_set1_ps(d))};
  }
  template <bool EXACT>
  MLXGP_AVX512 static void chunk(const uint8_t* b, const Head& h, int, __m512& w0, __m512& w1) {
    nibble_weights(load16(b + 2), h.t, w0, w1);
  }
};

// block_q4_1: half d, m; qs[16].
struct Q4_1 {
  static constexpr int kElems = 32, kBytes = 20, kHalves = 2;
  struct Head {
    __m512 d, m, t;  // t: q * d + m for q = 0..15 in one FMA, the row kernel's arithmetic
  };
  MLXGP_AVX512 static Head head(const uint8_t* b) { return head_of(h2f(b), h2f(b + 2)); }
  MLXGP_AVX512 static Head head_at(const float* s) { return head_of(s[0], s[1]); }
  MLXGP_AVX512 static Head head_of(float df, float mf) {
    const __m512 d = _mm512_set1_ps(df), m = _mm512_set1_ps(mf);
    return {d, m, affine<false>(nibble_codes(), d, m)};
  }
  template <bool EXACT>
  MLXGP_AVX512 static void chunk(const uint8_t* b, const Head& h, int, __m512& w0, __m512& w1) {
    const __m128i q = load16(b + 4);
    if constexpr (EXACT) {
      w0 = affine<EXACT>(u8f(bits16(q, 0, 0x0F)), h.d, h.m);
      w1 = affine<EXACT>(u8f(bits16(q, 4, 0x0F)), h.d, h.m);
    } else {
      nibble_weights(q, h.t, w0, w1);
    }
  }
};

// block_q5_0 / block_q5_1: half d (, m); uint32 qh (bit j: element j's fifth bit); qs[16].
template <bool MIN>
struct Q5 {
  static constexpr int kElems = 32, kBytes = MIN ? 24 : 22, kHalves = MIN ? 2 : 1;
  struct Head {
    __m512 d, m, lo, hi;  // lo, hi: the weights of codes 0..15 and 16..31 (nibble_lookup.h)
  };
  MLXGP_AVX512 static Head head(const uint8_t* b) { return head_of(h2f(b), MIN ? h2f(b + 2) : 0.0f); }
  MLXGP_AVX512 static Head head_at(const float* s) { return head_of(s[0], MIN ? s[1] : 0.0f); }
  MLXGP_AVX512 static Head head_of(float df, float mf) {
    const __m512 d = _mm512_set1_ps(df), m = _mm512_set1_ps(mf), c = nibble_codes(), c16 = _mm512_set1_ps(16.0f);
    if constexpr (MIN) return {d, m, affine<false>(c, d, m), affine<false>(_mm512_add_ps(c, c16), d, m)};
    else return {d, m, _mm512_mul_ps(_mm512_sub_ps(c, c16), d), _mm512_mul_ps(c, d)};
  }
  template <bool EXACT>
  MLXGP_AVX512 static void chunk(const uint8_t* b, const Head& h, int, __m512& w0, __m512& w1) {
    const uint8_t* p = b + (MIN ? 4 : 2);
    uint32_t qh;
    std::memcpy(&qh, p, 4);
    const __m128i q = load16(p + 4);
    const __m512i sixteen = _mm512_set1_epi32(16);
    if constexpr (!EXACT) {
      // Codes 0..31 by a two-table lookup (vpermt2ps reads an index's low 5 bits).
      const __m512i v = _mm512_cvtepu8_epi32(q), lo4 = _mm512_and_si512(v, _mm512_set1_epi32(0xF));
      const __m512i i0 = _mm512_mask_or_epi32(lo4, static_cast<__mmask16>(qh), lo4, sixteen);
      const __m512i hi4 = _mm512_srli_epi32(v, 4);
      const __m512i i1 = _mm512_mask_or_epi32(hi4, static_cast<__mmask16>(qh >> 16), hi4, sixteen);
      w0 = _mm512_permutex2var_ps(h.lo, i0, h.hi);
      w1 = _mm512_permutex2var_ps(h.lo, i1, h.hi);
      return;
    }
    __m512i v0 = _mm512_cvtepu8_epi32(bits16(q, 0, 0x0F)), v1 = _mm512_cvtepu8_epi32(bits16(q, 4, 0x0F));
    v0 = _mm512_mask_or_epi32(v0, static_cast<__mmask16>(qh), v0, sixteen);
    v1 = _mm512_mask_or_epi32(v1, static_cast<__mmask16>(qh >> 16), v1, sixteen);
    if constexpr (MIN) {
      w0 = affine<EXACT>(_mm512_cvtepi32_ps(v0), h.d, h.m);
      w1 = affine<EXACT>(_mm512_cvtepi32_ps(v1), h.d, h.m);
    } else {
      w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v0, sixteen)), h.d);
      w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v1, sixteen)), h.d);
    }
  }
};

// block_q8_0: half d; int8 qs[32].
struct Q8_0 {
  static constexpr int kElems = 32, kBytes = 34;
  struct Head {
    __m512 d;
  };
  MLXGP_AVX512 static Head head(const uint8_t* b) { return {_mm512_set1_ps(h2f(b))}; }
  template <bool EXACT>
  MLXGP_AVX512 static void chunk(const uint8_t* b, const Head& h, int, __m512& w0, __m512& w1) {
    w0 = _mm512_mul_ps(i8f(load16(b + 2)), h.d);
    w1 = _mm512_mul_ps(i8f(load16(b + 18)), h.d);
  }
};

// block_q2_K: scales[16] (low nibble scale, high nibble min, per 16 values); qs[64]; half d, dmin.
// Chunk c = 4n + j: 2-bit field j of qs[32n .. 32n + 31], sub-blocks 8n + 2j and 8n + 2j + 1.
struct Q2_K {
  static constexpr int kElems = 256, kBytes = 84;
  struct Head {
    alignas(64) float dl[16];
    alignas(64) float ml[16];
  };
  MLXGP_AVX512 static Head head(const uint8_t* b) {
    Head h;
    const __m512i s = _mm512_cvtepu8_epi32(load16(b));
    _mm512_store_ps(h.dl, to_f(_mm512_and_si512(s, _mm512_set1_epi32(0xF)), h2f(b + 80)));
    _mm512_store_ps(h.ml, to_f(_mm512_srli_epi32(s, 4), h2f(b + 82)));
    return h;
  }
  template <bool EXACT>
  MLXGP_AVX512 static void chunk(const uint8_t* b, const Head& h, int c, __m512& w0, __m512& w1) {
    const int n = c / 4, j = c % 4, s = 8 * n + 2 * j;
    const __m256i q = bits32(load32(b + 16 + 32 * n), 2 * j, 3);
    w0 = affine_sub<EXACT>(_mm512_set1_ps(h.dl[s]), u8f(lo128(q)), _mm512_set1_ps(h.ml[s]));
    w1 = affine_sub<EXACT>(_mm512_set1_ps(h.dl[s + 1]), u8f(hi128(q)), _mm512_set1_ps(h.ml[s + 1]));
  }
};

// block_q3_K: hmask[32]; qs[64]; scales[12] (16 packed 6-bit scales, offset 32); half d.
// Chunk c = 4n + j: 2-bit field j of qs[32n ..], minus 4 where bit 4n + j of hmask is clear.
struct Q3_K {
  static constexpr int kElems = 256, kBytes = 110;
  struct Head {
    alignas(64) float dl[16];
  };
  MLXGP_AVX512 static Head head(const uint8_t* b) {
    int8_t scales[16];
    unpack_q3_k_scales(b + 96, scales);
    Head h;
    const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales)));
    _mm512_store_ps(h.dl, to_f(_mm512_sub_epi32(sc, _mm512_set1_epi32(32)), h2f(b + 108)));
    return h;
  }
  template <bool EXACT>
  MLXGP_AVX512 static void chunk(const uint8_t* b, const Head& h, int c, __m512& w0, __m512& w1) {
    const int n = c / 4, j = c % 4, s = 8 * n + 2 * j;
    const __m256i q = bits32(load32(b + 32 + 32 * n), 2 * j, 3);
    const __m256i hm = _mm256_and_si256(load32(b), _mm256_set1_epi8(static_cast<char>(1 << (4 * n + j))));
    const __m256i minus4 = _mm256_and_si256(_mm256_cmpeq_epi8(hm, _mm256_setzero_si256()), _mm256_set1_epi8(4));
    const __m256i v = _mm256_sub_epi8(q, minus4);
    w0 = _mm512_mul_ps(_mm512_set1_ps(h.dl[s]), i8f(lo128(v)));
    w1 = _mm512_mul_ps(_mm512_set1_ps(h.dl[s + 1]), i8f(hi128(v)));
  }
};

// block_q4_K / block_q5_K: half d, dmin; scales[12] (8 packed 6-bit scale/min pairs, one per 32);
// (Q5_K: qh[32], bit c of qh[l] is element 32c + l's fifth bit); qs[128] (chunk c: nibble c % 2 of
// qs[32 (c / 2) ..]).
template <bool FIVE>
struct QK45 {
  static constexpr int kElems = 256, kBytes = FIVE ? 176 : 144;
  struct Head {
    alignas(32) float dl[8];
    alignas(32) float ml[8];
  };
  MLXGP_AVX512 static Head head(const uint8_t* b) {
    // The 6-bit scales and mins of get_scale_min_k4 for j = 0..7 at once, on the three words a0..a2 of
    // the 12 packed bytes: j < 4 are the low 6 bits of a0 (scales) and a1 (mins); j >= 4 take 4 bits from
    // a2 (low nibbles: scales, high: mins) and their top 2 bits from the top of a0 / a1.
    uint32_t a[3];
    std::memcpy(a, b + 4, 12);
    const uint32_t lo6 = 0x3F3F3F3F, lo4 = 0x0F0F0F0F, lo2 = 0x03030303;
    const uint32_t sc[2] = {a[0] & lo6, (a[2] & lo4) | (((a[0] >> 6) & lo2) << 4)};
    const uint32_t mn[2] = {a[1] & lo6, ((a[2] >> 4) & lo4) | (((a[1] >> 6) & lo2) << 4)};
    Head h;
    _mm256_store_ps(h.dl, to_f8(sc, h2f(b)));
    _mm256_store_ps(h.ml, to_f8(mn, h2f(b + 2)));
    return h;
  }
  template <bool EXACT>
  MLXGP_AVX512 static void chunk(const uint8_t* b, const Head& h, int c, __m512& w0, __m512& w1) {
    __m256i q = bits32(load32(b + (FIVE ? 48 : 16) + 32 * (c / 2)), 4 * (c % 2), 0x0F);
    if constexpr (FIVE) q = _mm256_or_si256(q, _mm256_slli_epi16(bits32(load32(b + 16), c, 1), 4));
    const __m512 d = _mm512_set1_ps(h.dl[c]), m = _mm512_set1_ps(h.ml[c]);
    w0 = affine_sub<EXACT>(d, u8f(lo128(q)), m);
    w1 = affine_sub<EXACT>(d, u8f(hi128(q)), m);
  }
};

// block_q6_K: ql[128] (low 4 bits); qh[64] (high 2 bits); int8 scales[16]; half d. Chunk c = 4n + s:
// nibble s / 2 of ql[64n + 32 (s % 2) ..], 2-bit field s of qh[32n ..], minus 32; sub-blocks 8n + 2s, +1.
struct Q6_K {
  static constexpr int kElems = 256, kBytes = 210;
  struct Head {
    alignas(64) float dl[16];
  };
  MLXGP_AVX512 static Head head(const uint8_t* b) {
    Head h;
    _mm512_store_ps(h.dl, to_f(_mm512_cvtepi8_epi32(load16(b + 192)), h2f(b + 208)));
    return h;
  }
  template <bool EXACT>
  MLXGP_AVX512 static void chunk(const uint8_t* b, const Head& h, int c, __m512& w0, __m512& w1) {
    const int n = c / 4, s = c % 4, i = 8 * n + 2 * s;
    const __m256i lo = bits32(load32(b + 64 * n + 32 * (s % 2)), 4 * (s / 2), 0x0F);
    const __m256i hi = _mm256_slli_epi16(bits32(load32(b + 128 + 32 * n), 2 * s, 3), 4);
    const __m256i v = _mm256_sub_epi8(_mm256_or_si256(lo, hi), _mm256_set1_epi8(32));
    w0 = _mm512_mul_ps(_mm512_set1_ps(h.dl[i]), i8f(lo128(v)));
    w1 = _mm512_mul_ps(_mm512_set1_ps(h.dl[i + 1]), i8f(hi128(v)));
  }
};

// The 16 weights of an IQ4 grid scaled by d, kIq4NlValues[q] * d for q = 0..15 (ggml's d * value).
MLXGP_AVX512 inline __m512 iq4_table(float d) {
  return _mm512_mul_ps(_mm512_set1_ps(d), i8f(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4NlValues))));
}

// block_iq4_nl: half d; qs[16] as Q4_0's, the codes indices into the IQ4 grid.
struct IQ4_NL {
  static constexpr int kElems = 32, kBytes = 18, kHalves = 1;
  struct Head {
    __m512 t;
  };
  MLXGP_AVX512 static Head head(const uint8_t* b) { return {iq4_table(h2f(b))}; }
  MLXGP_AVX512 static Head head_at(const float* s) { return {iq4_table(*s)}; }
  template <bool EXACT>
  MLXGP_AVX512 static void chunk(const uint8_t* b, const Head& h, int, __m512& w0, __m512& w1) {
    nibble_weights(load16(b + 2), h.t, w0, w1);
  }
};

// block_iq4_xs: half d; uint16 scales_h; scales_l[4]; qs[128]. Chunk c is sub-block c: qs[16c ..] as an
// IQ4_NL block's, on the grid scaled by d * (scale c - 32).
struct IQ4_XS {
  static constexpr int kElems = 256, kBytes = 136;
  struct Head {
    alignas(32) float dl[8];
  };
  MLXGP_AVX512 static Head head(const uint8_t* b) {
    Head h;
    const float d = h2f(b);
    for (int j = 0; j < 8; ++j) h.dl[j] = d * static_cast<float>(iq4_xs_scale(b, j) - 32);
    return h;
  }
  template <bool EXACT>
  MLXGP_AVX512 static void chunk(const uint8_t* b, const Head& h, int c, __m512& w0, __m512& w1) {
    nibble_weights(load16(b + 8 + 16 * c), iq4_table(h.dl[c]), w0, w1);
  }
};

// The first kHalves halves (the scales) of blocks [0, n) of a row of F blocks, as floats: s[kHalves * j + h].
// A block's own head() reads them one half at a time, each a word insert, a conversion and a broadcast on
// the shuffle port that the code lookups need too; that port, not memory, bounded the batch-1 rows on a
// 2-core Xeon. Here one word permutation gathers the scales of up to 16 / kHalves blocks from two loads
// and one conversion widens them (exactly, as h2f); the row kernel then broadcasts each from memory, a
// load and no vector op. Default GGUF, float batch-1 decode with the lookups: 145 -> 178 tok/s. (Q8_0's
// 34-byte blocks measured slower gathered: 147 -> 134 tok/s on the Q8_0 file; they read their own.)
template <class F>
MLXGP_AVX512 void gather_halves(const uint8_t* row, int n, float* s) {
  constexpr int W = F::kBytes / 2, H = F::kHalves;  // a block is W words; its scales are its first H
  constexpr int G = (64 - H) / W + 1 < 16 / H ? (64 - H) / W + 1 : 16 / H;  // blocks per gather
  alignas(64) static constexpr auto idx = [] {
    std::array<uint16_t, 32> v{};
    for (int g = 0; g < G; ++g)
      for (int h = 0; h < H; ++h) v[g * H + h] = static_cast<uint16_t>(g * W + h);
    return v;
  }();
  const __m512i ix = _mm512_load_si512(idx.data());
  for (int j = 0; j < n; j += G) {
    // Only the words of blocks < n are read: the last row of a tensor ends its buffer.
    const size_t words = static_cast<size_t>(n - j) * W;
    const __mmask32 m0 = words >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << words) - 1);
    const __mmask32 m1 = words >= 64   ? ~__mmask32{0}
                         : words <= 32 ? 0
                                       : static_cast<__mmask32>((1u << (words - 32)) - 1);
    const uint8_t* p = row + static_cast<size_t>(j) * F::kBytes;
    const __m512i lo = _mm512_maskz_loadu_epi16(m0, p), hi = _mm512_maskz_loadu_epi16(m1, p + 64);
    const __m512i v = _mm512_permutex2var_epi16(lo, ix, hi);
    _mm512_storeu_ps(s + static_cast<size_t>(j) * H, _mm512_cvtph_ps(_mm512_castsi512_si256(v)));
  }
}

// MB activation rows against weight rows [n0, n1): each 32-weight chunk is decoded once and used MB times.
// Every (row, output) has its own accumulator pair summed in the same order whatever MB, so a batch row's
// result equals its solo run bit for bit. (Two weight rows per pass, which helps the affine 4-bit kernel,
// measured no faster here on Zen 4 for Q4_1, Q5_0, Q8_0, Q4_K or Q6_K.) Passes of up to 4 rows read
// gathered scales (single thread, 576 x 1536 Q4_1, cycles a block: 1 row 6.2-6.7 -> 4.4-4.7, 4 rows 9.2 ->
// 8.2-8.5); 8-row ones read each block's own (about 13.4 either way, and slower gathered end to end).
template <class F, int MB>
MLXGP_AVX512 void rows_kernel(const GgmlRowsArgs& a, int m0, int n0, int n1) {
  constexpr bool kGathered = MB <= 4 && requires { F::kHalves; };
  constexpr int kSegment = 256;  // blocks whose scales are gathered at a time
  alignas(64) float scales[kGathered ? kSegment * 2 + 16 : 1];
  const int blocks = a.K / F::kElems;
  const float* xr = a.x + static_cast<size_t>(m0) * a.K;
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wr = a.w + static_cast<size_t>(n) * a.row_bytes;
    __m512 acc[MB][2];
    for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
    for (int s0 = 0; s0 < blocks; s0 += kSegment) {
      const int s1 = std::min(blocks, s0 + kSegment);
      if constexpr (kGathered) gather_halves<F>(wr + static_cast<size_t>(s0) * F::kBytes, s1 - s0, scales);
      for (int ib = s0; ib < s1; ++ib) {
        const uint8_t* b = wr + static_cast<size_t>(ib) * F::kBytes;
        typename F::Head h;
        if constexpr (kGathered) h = F::head_at(scales + (ib - s0) * F::kHalves);
        else h = F::head(b);
        prefetch_ahead<F::kBytes>(b);  // rows follow each other: one stream (prefetch.h)
#pragma GCC unroll 8
        for (int c = 0; c < F::kElems / 32; ++c) {
          __m512 w0, w1;
          F::template chunk<false>(b, h, c, w0, w1);
          const size_t k = static_cast<size_t>(ib) * F::kElems + 32 * c;
          for (int m = 0; m < MB; ++m) {
            const float* xm = xr + static_cast<size_t>(m) * a.K + k;
            acc[m][0] = _mm512_fmadd_ps(w0, _mm512_load_ps(xm), acc[m][0]);
            acc[m][1] = _mm512_fmadd_ps(w1, _mm512_load_ps(xm + 16), acc[m][1]);
          }
        }
      }
    }
    for (int m = 0; m < MB; ++m)
      a.out[static_cast<size_t>(m0 + m) * a.N + n] = _mm512_reduce_add_ps(_mm512_add_ps(acc[m][0], acc[m][1]));
  }
}

template <class F>
void rows_for(const GgmlRowsArgs& a, int n0, int n1) {
  // As the affine kernel: 8 rows fit the registers, and a batch sweeps each weight tile once.
  for_weight_tiles<8>(a.M, n0, n1, a.row_bytes, 16 * 1024,
                      [&](int m0, auto mbc, int t0, int t1) { rows_kernel<F, decltype(mbc)::value>(a, m0, t0, t1); });
}

template <class F>
MLXGP_AVX512 void dequantize_for(const uint8_t* w, size_t row_bytes, int K, float* out, int r0, int r1) {
  const int blocks = K / F::kElems;
  for (int r = r0; r < r1; ++r) {
    const uint8_t* wr = w + static_cast<size_t>(r) * row_bytes;
    float* o = out + static_cast<size_t>(r) * K;
    for (int ib = 0; ib < blocks; ++ib) {
      const uint8_t* b = wr + static_cast<size_t>(ib) * F::kBytes;
      prefetch_ahead<F::kBytes>(b);  // rows follow each other: one stream (prefetch.h)
      const typename F::Head h = F::head(b);
#pragma GCC unroll 8
      for (int c = 0; c < F::kElems / 32; ++c) {
        __m512 w0, w1;
        F::template chunk<true>(b, h, c, w0, w1);
        float* y = o + static_cast<size_t>(ib) * F::kElems + 32 * c;
        _mm512_storeu_ps(y, w0);
        _mm512_storeu_ps(y + 16, w1);
      }
    }
  }
}

// fn(F{}) for the decoder of `type`; false when there is none.
template <class Fn>
bool with_format(uint32_t type, Fn&& fn) {
  switch (type) {
    case kGgmlQ4_0:
      fn(Q4_0{});
      return true;
    case kGgmlQ4_1:
      fn(Q4_1{});
      return true;
    case kGgmlQ5_0:
      fn(Q5<false>{});
      return true;
    case kGgmlQ5_1:
      fn(Q5<true>{});
      return true;
    case kGgmlQ8_0:
      fn(Q8_0{});
      return true;
    case kGgmlQ2_K:
      fn(Q2_K{});
      return true;
    case kGgmlQ3_K:
      fn(Q3_K{});
      return true;
    case kGgmlQ4_K:
      fn(QK45<false>{});
      return true;
    case kGgmlQ5_K:
      fn(QK45<true>{});
      return true;
    case kGgmlQ6_K:
      fn(Q6_K{});
      return true;
    case kGgmlIQ4_NL:
      fn(IQ4_NL{});
      return true;
    case kGgmlIQ4_XS:
      fn(IQ4_XS{});
      return true;
    default:
      return false;
  }
}

}  // namespace

bool ggml_simd_supported(uint32_t type) {
  return !kernels_disabled() && detect_isa() == Isa::avx512 && with_format(type, [](auto) {});
}

void ggml_rows(uint32_t type, const GgmlRowsArgs& a, int n0, int n1) {
  with_format(type, [&](auto f) { rows_for<decltype(f)>(a, n0, n1); });
}

void ggml_dequantize_rows(uint32_t type, const uint8_t* w, size_t row_bytes, int K, float* out, int r0, int r1) {
  with_format(type, [&](auto f) { dequantize_for<decltype(f)>(w, row_bytes, K, out, r0, r1); });
}

#else  // no x86: the callers check ggml_simd_supported first

bool ggml_simd_supported(uint32_t) { return false; }
void ggml_rows(uint32_t, const GgmlRowsArgs&, int, int) {}
void ggml_dequantize_rows(uint32_t, const uint8_t*, size_t, int, float*, int, int) {}

#endif

}  // namespace mlxgp::kernels
