// Int8-activation products for llama.cpp's Q4_K, Q5_K, Q6_K and IQ4_XS super-blocks (256 values), as its CPU
// backend computes them (ggml_vec_dot_q4_K_q8_K / q5_K_q8_K / q6_K_q8_K / iq4_xs_q8_K): the activations are quantized
// per 256 values to Q8_K (quantize_row_q8_K_ref, which x86 runs: the first value of largest magnitude sets iscale =
// -127 / max, q = min(127, round-half-even(iscale * x)), d = 1 / iscale, and the sums of each 16 q), and each
// super-block's integer products are exact.
//
// One float sequence per (activation row, output), whatever the kernel: per super-block, in order,
// p = float(isum) * (d_w * d_x), less float(msum) * (dmin_w * d_x) for Q4_K / Q5_K, then acc = acc + p. isum is
// the exact sum of scale * code * q over the 256 values (Q6_K's codes are stored + 32: less 32 times
// each 16-value sum of q times its scale; IQ4_XS's grid values, scales 6-bit - 32, are taken + 128 and
// the same way less 128 times those sums); msum the exact sum of each sub-block's min times its two
// 16-value sums of q. Two kernels follow it, so their outputs are the same bits:
// - over the blocks as stored (any N): weights times activations in pairs (vpmaddubsw), times the pairs'
//   sub-block scales in pairs again (vpmaddwd), the lanes then summed per super-block; four activation
//   rows share each unpacked super-block;
// - over weights repacked at load, 16 rows interleaved per super-block (as ggml_q8_packed.cpp does for the
//   legacy blocks): lanes are weight rows, each vpdpbusd multiplies 4 codes of 16 rows by 4 activation
//   bytes broadcast from memory, and the sub-block scales multiply 16 rows' integer sums at once.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/aligned.h"
#include "kernels/ggml_blocks.h"
#include "kernels/ggml_q8.h"
#include "kernels/thread_pool.h"

#if defined(__x86_64__)
#include "kernels/q8_block.h"  // last: its pragmas apply to the kernels below
#endif

namespace mlxgp::kernels {

#if defined(__x86_64__)

namespace {

constexpr int kSuper = 256;

// Activation rows in Q8_K: q [M][K], d [M][K / 256], sums [M][K / 16].
struct RowsQ8K {
  AlignedVector<int8_t> q;
  AlignedVector<float> d;
  AlignedVector<int16_t> sums;
};

// quantize_row_q8_K_ref for one super-block. A non-finite value makes d NaN (products NaN, as in float32);
// an all-zero block has d = 0 and zero codes.
MLXGP_VNNI void quantize_super(const float* x, int8_t* q, float& d, int16_t* sums) {
  __m512 amax_v = _mm512_setzero_ps();
  bool finite = true;
  for (int i = 0; i < kSuper; i += 16) {
    const __m512 a = _mm512_abs_ps(_mm512_loadu_ps(x + i));
    finite = finite && !_mm512_cmp_ps_mask(a, _mm512_set1_ps(FLT_MAX), _CMP_NLE_UQ);
    amax_v = _mm512_max_ps(amax_v, a);
  }
  const float amax = _mm512_reduce_max_ps(amax_v);
  if (!finite || amax == 0.f) {
    std::memset(q, 0, kSuper);
    std::memset(sums, 0, kSuper / 16 * sizeof(int16_t));
    d = finite ? 0.f : std::numeric_limits<float>::quiet_NaN();
    return;
  }
  int first = 0;
  while (std::fabs(x[first]) != amax) ++first;
  const float iscale = -127.f / x[first];
  const __m512 s = _mm512_set1_ps(iscale);
  for (int i = 0; i < kSuper; i += 16) {
    __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), s));  // round half to even
    v = _mm512_min_epi32(v, _mm512_set1_epi32(127));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(v));
    sums[i / 16] = static_cast<int16_t>(_mm512_reduce_add_epi32(v));
  }
  d = 1.f / iscale;
}

MLXGP_VNNI void quantize_range(const float* x, int K, RowsQ8K& r, int m0, int m1) {
  const int S = K / kSuper;
  for (int m = m0; m < m1; ++m)
    for (int s = 0; s < S; ++s) {
      const size_t i = static_cast<size_t>(m) * S + s;
      quantize_super(x + i * kSuper, r.q.data() + i * kSuper, r.d[i], r.sums.data() + i * 16);
    }
}

// Rows in parallel (prefill chunks of 64 rows): one thread quantizing them left the other idle.
void quantize_rows(const float* x, int M, int K, RowsQ8K& r) {
  r.q.resize(static_cast<size_t>(M) * K);
  r.d.resize(static_cast<size_t>(M) * (K / kSuper));
  r.sums.resize(static_cast<size_t>(M) * K / 16);
  parallel_rows(M, 8 * K, [&](int m0, int m1) { quantize_range(x, K, r, m0, m1); });
}

MLXGP_VNNI inline float h2f(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return _cvtsh_ss(v);
}

// One weight super-block unpacked: w[j] = values 64j .. 64j + 63 as unsigned bytes; sc[j] = each value
// pair's scale as 32 int16 lanes; mins = the 16-value sums' multipliers as 16 int16 lanes; d, dmin (Q4_K).
struct Super {
  __m512i w[4], sc[4];
  __m256i mins;
  float d, dmin;
};

// Lane indices for vpermw: chunk j's 32 value pairs take scale kPairScale[j][t] (Q4_K: sub-block 2j for
// values 64j .. 64j + 31, then 2j + 1; Q6_K: 4j + t / 8, one scale per 16 values), and the 16-value
// sums' Q4_K mins the sub-block's (g / 2).
template <int kPerScale>
constexpr auto pair_scales() {
  std::array<std::array<int16_t, 32>, 4> a{};
  for (int j = 0; j < 4; ++j)
    for (int t = 0; t < 32; ++t) a[j][t] = static_cast<int16_t>((64 * j + 2 * t) / kPerScale);
  return a;
}
alignas(64) constexpr auto kQ4KScales = pair_scales<32>();
alignas(64) constexpr auto kQ6KScales = pair_scales<16>();
alignas(32) constexpr std::array<int16_t, 16> kQ4KMins = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7};

// block_q4_K: half d, dmin; scales[12]: eight 6-bit scales and mins (get_scale_min_k4's packing: sub-block
// j < 4 keeps its scale and min in the low 6 bits of bytes j and j + 4; j >= 4 has its low 4 bits in
// byte j + 4's nibbles and its high 2 in the top bits of bytes j - 4 and j); qs[128]: chunk j's 32 bytes
// hold values 64j + l (low nibbles) and 64j + 32 + l (high).
// block_q5_K: the same with qh[32] before qs (qs at 48): bit 2j of qh[l] is value 64j + l's fifth bit (16),
// bit 2j + 1 value 64j + 32 + l's.
template <bool FIVE>
MLXGP_VNNI inline void unpack_q45_K(const uint8_t* b, Super& s) {
  s.d = h2f(b);
  s.dmin = h2f(b + 2);
  uint32_t k[3];
  std::memcpy(k, b + 4, 12);
  // Per byte lane i < 4: scale i = k0 & 63, min i = k1 & 63; scale 4 + i = (k2 & 15) | (k0 >> 6) << 4,
  // min 4 + i = (k2 >> 4) | (k1 >> 6) << 4.
  const uint32_t low6 = 0x3F3F3F3Fu, low4 = 0x0F0F0F0Fu, top2 = 0x03030303u;
  const uint64_t sc = (k[0] & low6) | static_cast<uint64_t>((k[2] & low4) | ((k[0] >> 6) & top2) << 4) << 32;
  const uint64_t mn = (k[1] & low6) | static_cast<uint64_t>(((k[2] >> 4) & low4) | ((k[1] >> 6) & top2) << 4) << 32;
  const __m512i scales = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<int64_t>(sc))));
  s.mins =
      _mm256_permutexvar_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(kQ4KMins.data())),
                               _mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<int64_t>(mn)))));
  const __m512i low = _mm512_set1_epi8(0x0F);
  for (int j = 0; j < 4; ++j) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + (FIVE ? 48 : 16) + 32 * j));
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
    s.w[j] = _mm512_and_si512(z, low);
    if constexpr (FIVE) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
      const __m512i hz =
          _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srli_epi16(h, 2 * j)), _mm256_srli_epi16(h, 2 * j + 1), 1);
      s.w[j] = _mm512_or_si512(s.w[j], _mm512_slli_epi16(_mm512_and_si512(hz, _mm512_set1_epi8(1)), 4));
    }
    s.sc[j] = _mm512_permutexvar_epi16(_mm512_load_si512(kQ4KScales[j].data()), scales);
  }
}

// block_q6_K: ql[128], qh[64], int8 scales[16] (one per 16 values), half d. Half n (values 128n ..)
// reads ql[64n ..] and qh[32n ..]: value 128n + 32t + l (t < 4, l < 32) is ql's low (t even) or high
// (t odd) nibble of byte 64n + 32(t & 1) + l, plus bits 2t, 2t + 1 of qh byte 32n + l as bits 4-5; the
// code is stored + 32.
MLXGP_VNNI inline void unpack_q6_K(const uint8_t* b, Super& s) {
  s.d = h2f(b + 208);
  const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192));
  const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
  // The bias of 32 times each 16-value sum, folded into M: mins[g] = 32 * scale g.
  s.mins = _mm256_slli_epi16(sc16, 5);
  const __m512i scales = _mm512_castsi256_si512(sc16);
  const __m512i low = _mm512_set1_epi8(0x0F), two = _mm512_set1_epi8(0x30);
  for (int n = 0; n < 2; ++n) {
    const __m512i ql = _mm512_loadu_si512(b + 64 * n);
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * n));
    // Chunk 2n: values 128n + [0, 32) then [32, 64): low nibbles of ql, qh bits 0-1 then 2-3.
    const __m512i h01 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_slli_epi16(h, 4)), _mm256_slli_epi16(h, 2), 1);
    s.w[2 * n] = _mm512_or_si512(_mm512_and_si512(ql, low), _mm512_and_si512(h01, two));
    // Chunk 2n + 1: values 128n + [64, 96) then [96, 128): high nibbles, qh bits 4-5 then 6-7.
    const __m512i h23 = _mm512_inserti64x4(_mm512_castsi256_si512(h), _mm256_srli_epi16(h, 2), 1);
    s.w[2 * n + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low), _mm512_and_si512(h23, two));
  }
  for (int j = 0; j < 4; ++j) s.sc[j] = _mm512_permutexvar_epi16(_mm512_load_si512(kQ6KScales[j].data()), scales);
}

// block_iq4_xs: half d; scales_h, scales_l[4] (iq4_xs_scale); qs[128]: sub-block ib's 16 bytes hold values
// 32ib + l (low nibbles) and 32ib + 16 + l (high). w[j] = values 64j .. 64j + 63 as grid values + 128;
// sc[j] = the sub-block scale (6-bit scale - 32) of each 4-value group, as 16 int32 lanes (the products go
// through vpdpbusd: pairs of grid values times codes would saturate vpmaddubsw's int16); mins = 128 times
// the scale of each 16-value sum.
MLXGP_VNNI inline void unpack_iq4_xs(const uint8_t* b, Super& s) {
  s.d = h2f(b);
  int ls[8];
  alignas(32) int16_t mins[16];
  for (int ib = 0; ib < 8; ++ib) {
    ls[ib] = iq4_xs_scale(b, ib) - 32;
    mins[2 * ib] = mins[2 * ib + 1] = static_cast<int16_t>(128 * ls[ib]);
  }
  s.mins = _mm256_load_si256(reinterpret_cast<const __m256i*>(mins));
  const __m512i grid = q8::iq4_grid_u8();
  const __m256i low = _mm256_set1_epi8(0x0F);
  for (int j = 0; j < 4; ++j) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 8 + 32 * j));
    // [low nibbles of sub-block 2j, its high ones, then sub-block 2j + 1's]: element order.
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(q, low)),
                                         _mm256_and_si256(_mm256_srli_epi16(q, 4), low), 1);
    s.w[j] = _mm512_shuffle_epi8(grid, _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0)));
    s.sc[j] =
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(ls[2 * j])), _mm256_set1_epi32(ls[2 * j + 1]), 1);
  }
}

template <uint32_t T>
MLXGP_VNNI inline void unpack(const uint8_t* b, Super& s) {
  if constexpr (T == kGgmlQ4_K) unpack_q45_K<false>(b, s);
  else if constexpr (T == kGgmlQ5_K) unpack_q45_K<true>(b, s);
  else if constexpr (T == kGgmlIQ4_XS) unpack_iq4_xs(b, s);
  else unpack_q6_K(b, s);
}

// Weight row w (S super-blocks) against activation rows [m0, m0 + R): out[(m - m0) * ldo]. Each super-block
// is unpacked once for the R rows, whose accumulators stay in registers.
template <uint32_t T, int R>
MLXGP_VNNI void rows_tile(const RowsQ8K& x, int m0, int S, const uint8_t* w, size_t block_bytes, float* out,
                          size_t ldo) {
  float acc[R] = {};
  for (int s = 0; s < S; ++s) {
    Super sb;
    unpack<T>(w + s * block_bytes, sb);
    for (int r = 0; r < R; ++r) {
      const size_t i = static_cast<size_t>(m0 + r) * S + s;
      const int8_t* q = x.q.data() + i * kSuper;
      __m512i L = _mm512_setzero_si512();
      for (int j = 0; j < 4; ++j) {
        const __m512i qj = _mm512_loadu_si512(q + 64 * j);
        if constexpr (T == kGgmlIQ4_XS)
          L = _mm512_add_epi32(L,
                               _mm512_mullo_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), sb.w[j], qj), sb.sc[j]));
        else L = _mm512_add_epi32(L, _mm512_madd_epi16(_mm512_maddubs_epi16(sb.w[j], qj), sb.sc[j]));
      }
      const __m256i sums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.sums.data() + i * 16));
      const int32_t msum = _mm512_reduce_add_epi32(_mm512_zextsi256_si512(_mm256_madd_epi16(sums, sb.mins)));
      const int32_t isum = _mm512_reduce_add_epi32(L) - (T == kGgmlQ4_K || T == kGgmlQ5_K ? 0 : msum);
      const float dx = x.d[i];
      float p = static_cast<float>(isum) * (sb.d * dx);
      if constexpr (T == kGgmlQ4_K || T == kGgmlQ5_K) p = p - static_cast<float>(msum) * (sb.dmin * dx);
      acc[r] = acc[r] + p;
    }
  }
  for (int r = 0; r < R; ++r) out[static_cast<size_t>(r) * ldo] = acc[r];
}

// Weight row w against activation rows [0, M): out[m * ldo], four rows a tile.
template <uint32_t T>
MLXGP_VNNI void row_against(const RowsQ8K& x, int M, int S, const uint8_t* w, size_t block_bytes, float* out,
                            size_t ldo) {
  int m = 0;
  for (; m + 4 <= M; m += 4) rows_tile<T, 4>(x, m, S, w, block_bytes, out + m * ldo, ldo);
  switch (M - m) {
    case 3:
      return rows_tile<T, 3>(x, m, S, w, block_bytes, out + m * ldo, ldo);
    case 2:
      return rows_tile<T, 2>(x, m, S, w, block_bytes, out + m * ldo, ldo);
    case 1:
      return rows_tile<T, 1>(x, m, S, w, block_bytes, out + m * ldo, ldo);
    default:
      return;
  }
}

template <uint32_t T>
void product(const float* x, int M, int K, const std::vector<GgmlSegment>& segs) {
  // Prompt-sized M in chunks whose activations stay in cache while the weight rows pass over them.
  constexpr int kChunkRows = 64;
  const int S = K / kSuper;
  const size_t block_bytes = ggml_block(T).bytes;
  RowsQ8K q;
  for (int c0 = 0; c0 < M; c0 += kChunkRows) {
    const int rows = std::min(kChunkRows, M - c0);
    quantize_rows(x + static_cast<size_t>(c0) * K, rows, K, q);
    parallel_rows(total_rows(segs), K * rows, [&](int g0, int g1) {
      for_segment_rows(segs, g0, g1, [&](const GgmlSegment& sg, int n0, int n1) {
        for (int n = n0; n < n1; ++n)
          row_against<T>(q, rows, S, sg.w + static_cast<size_t>(n) * sg.row_bytes, block_bytes,
                         sg.out + static_cast<size_t>(c0) * sg.N + n, sg.N);
      });
    });
  }
}

// ---- weights repacked at load: 16 rows interleaved per super-block ----
//
// Q4_K record, 16 x 144 bytes: the 16 rows' d halves [0, 32), dmin halves [32, 64), their scales' 12 bytes as
// three vectors [64, 256) (vector c, lane i = row i's bytes 4c .. 4c + 3), then 32 code vectors [256, 2304):
// vector v, lane i = row i's qs[4v .. 4v + 3] (chunk j = v / 8: low nibbles are values 64j + 4(v % 8) ..,
// high nibbles the same + 32).
// Q5_K record, 16 x 176 bytes: Q4_K's first 256 bytes, the qh bytes as 8 vectors [256, 768) (vector c, lane
// i = row i's qh[4c .. 4c + 3]), then the 32 code vectors [768, 2816) as Q4_K's.
// IQ4_XS record, 16 x 136 bytes: d halves [0, 32), scales_h halves [32, 64), scales_l as one vector [64, 128)
// (lane i = row i's 4 bytes), then 32 code vectors [128, 2176): vector v, lane i = row i's qs[4v .. 4v + 3]
// (sub-block v / 4: low nibbles are values 32(v / 4) + 4(v % 4) .., high nibbles the same + 16).
// Q6_K record, 16 x 210 bytes: d halves [0, 32), the 16 scales as four vectors [32, 288) (lane i = row i's
// scales 4c .. 4c + 3), then 16 triples of vectors [288, 3360), triple u = 8n + v holding (lane i = row i's
// bytes) ql[64n + 4v ..], ql[64n + 32 + 4v ..] and qh[32n + 4v ..]: one stream in the kernel's order.

constexpr int kLanes = 16;

// A record's pieces: where each stored byte range (offset, length) of a row's block goes, as the offset of
// its first 64-byte vector (lane i at + 4i, or + 2i for the halves).
struct Piece {
  int stored, bytes, packed;
};
std::vector<Piece> pieces(uint32_t type) {
  std::vector<Piece> p;
  if (type == kGgmlQ4_K || type == kGgmlQ5_K) {
    p = {{0, 2, 0}, {2, 2, 32}};
    for (int c = 0; c < 3; ++c) p.push_back({4 + 4 * c, 4, 64 + 64 * c});
    const bool five = type == kGgmlQ5_K;
    if (five)
      for (int c = 0; c < 8; ++c) p.push_back({16 + 4 * c, 4, 256 + 64 * c});
    for (int v = 0; v < 32; ++v) p.push_back({(five ? 48 : 16) + 4 * v, 4, (five ? 768 : 256) + 64 * v});
  } else if (type == kGgmlIQ4_XS) {
    p = {{0, 2, 0}, {2, 2, 32}, {4, 4, 64}};
    for (int v = 0; v < 32; ++v) p.push_back({8 + 4 * v, 4, 128 + 64 * v});
  } else {
    p = {{208, 2, 0}};
    for (int c = 0; c < 4; ++c) p.push_back({192 + 4 * c, 4, 32 + 64 * c});
    // In the order the kernel reads them (one stream): for u = 8n + v, ql[64n + 4v ..], ql[64n + 32 + 4v ..],
    // qh[32n + 4v ..].
    for (int u = 0; u < 16; ++u) {
      const int n = u / 8, v = u % 8;
      p.push_back({64 * n + 4 * v, 4, 288 + 192 * u});
      p.push_back({64 * n + 32 + 4 * v, 4, 288 + 192 * u + 64});
      p.push_back({128 + 32 * n + 4 * v, 4, 288 + 192 * u + 128});
    }
  }
  return p;
}

// 16 rows of S super-blocks between the stored layout (rows row_bytes apart) and their records, either way.
template <bool PACK>
void move_group(uint32_t type, std::conditional_t<PACK, const uint8_t*, uint8_t*> stored, size_t row_bytes, int S,
                std::conditional_t<PACK, uint8_t*, const uint8_t*> packed) {
  const size_t bytes = ggml_block(type).bytes, rec = kLanes * bytes;
  const auto ps = pieces(type);
  for (int s = 0; s < S; ++s)
    for (int i = 0; i < kLanes; ++i)
      for (const Piece& pc : ps) {
        auto* st = stored + i * row_bytes + s * bytes + pc.stored;
        auto* pk = packed + s * rec + pc.packed + pc.bytes * i;
        if constexpr (PACK) std::memcpy(pk, st, pc.bytes);
        else std::memcpy(st, pk, pc.bytes);
      }
}

// The int32 lanes of byte b of each lane of v (unsigned, or sign-extended).
MLXGP_VNNI inline __m512i byte_u(__m512i v, int b) {
  return _mm512_and_si512(_mm512_srli_epi32(v, 8 * b), _mm512_set1_epi32(0xFF));
}
MLXGP_VNNI inline __m512i byte_s(__m512i v, int b) { return _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * b), 24); }

// Super-block s of activation rows [m0, m0 + R): codes, 16-value sums and d.
template <int R>
struct RowsAt {
  const int8_t* q[R];
  const int16_t* sums[R];
  float d[R];
  RowsAt(const RowsQ8K& x, int m0, int S, int s) {
    for (int r = 0; r < R; ++r) {
      const size_t i = static_cast<size_t>(m0 + r) * S + s;
      q[r] = x.q.data() + i * kSuper;
      sums[r] = x.sums.data() + i * 16;
      d[r] = x.d[i];
    }
  }
};

// 16 weight rows (one group of records) against activation rows [m0, m0 + R): out[(m - m0) * ldo + i].
template <int R, bool FIVE>
MLXGP_VNNI void q45k_tile(const RowsQ8K& x, int m0, int S, const uint8_t* g, float* out, size_t ldo) {
  constexpr size_t rec = kLanes * (FIVE ? 176 : 144);
  constexpr int kCodes = FIVE ? 768 : 256;
  const __m512i low6 = _mm512_set1_epi32(0x3F3F3F3F), low4 = _mm512_set1_epi32(0x0F0F0F0F),
                top2 = _mm512_set1_epi32(0x03030303), nib = _mm512_set1_epi8(0x0F);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int s = 0; s < S; ++s) {
    const uint8_t* b = g + s * rec;
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)));
    const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32)));
    const __m512i k0 = _mm512_loadu_si512(b + 64), k1 = _mm512_loadu_si512(b + 128), k2 = _mm512_loadu_si512(b + 192);
    // get_scale_min_k4 on 16 rows: scales (and mins) 0-3 in the low 6 bits of k0 (k1), 4-7 from k2's
    // nibbles and k0's (k1's) top 2 bits.
    const __m512i sc[2] = {_mm512_and_si512(k0, low6),
                           _mm512_or_si512(_mm512_and_si512(k2, low4),
                                           _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(k0, 6), top2), 4))};
    const __m512i mn[2] = {_mm512_and_si512(k1, low6),
                           _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(k2, 4), low4),
                                           _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(k1, 6), top2), 4))};
    const RowsAt<R> a(x, m0, S, s);
    __m512i isum[R];
    for (int r = 0; r < R; ++r) isum[r] = _mm512_setzero_si512();
    for (int j = 0; j < 4; ++j) {
      __m512i lo[R], hi[R];
      for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) {
        const __m512i c = _mm512_loadu_si512(b + kCodes + 64 * (8 * j + v));
        __m512i wl = _mm512_and_si512(c, nib), wh = _mm512_and_si512(_mm512_srli_epi16(c, 4), nib);
        if constexpr (FIVE) {  // the fifth bits: bit 2j of qh[4v + k] for the low values, 2j + 1 for the high
          const __m512i h = _mm512_loadu_si512(b + 256 + 64 * v), one = _mm512_set1_epi8(1);
          wl = _mm512_or_si512(wl, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h, 2 * j), one), 4));
          wh = _mm512_or_si512(wh, _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(h, 2 * j + 1), one), 4));
        }
        for (int r = 0; r < R; ++r) {
          lo[r] = q8::dot(lo[r], wl, a.q[r] + 64 * j + 4 * v);
          hi[r] = q8::dot(hi[r], wh, a.q[r] + 64 * j + 32 + 4 * v);
        }
      }
      const __m512i sa = byte_u(sc[(2 * j) / 4], (2 * j) % 4), sb = byte_u(sc[(2 * j + 1) / 4], (2 * j + 1) % 4);
      for (int r = 0; r < R; ++r)
        isum[r] =
            _mm512_add_epi32(isum[r], _mm512_add_epi32(_mm512_mullo_epi32(lo[r], sa), _mm512_mullo_epi32(hi[r], sb)));
    }
    for (int r = 0; r < R; ++r) {
      __m512i msum = _mm512_setzero_si512();
      for (int t = 0; t < 8; ++t)
        msum = _mm512_add_epi32(msum, _mm512_mullo_epi32(byte_u(mn[t / 4], t % 4),
                                                         _mm512_set1_epi32(a.sums[r][2 * t] + a.sums[r][2 * t + 1])));
      const float dx = a.d[r];
      __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[r]), _mm512_mul_ps(d, _mm512_set1_ps(dx)));
      p = _mm512_sub_ps(p, _mm512_mul_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(dm, _mm512_set1_ps(dx))));
      acc[r] = _mm512_add_ps(acc[r], p);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + static_cast<size_t>(r) * ldo, acc[r]);
}

template <int R>
MLXGP_VNNI void q6k_tile(const RowsQ8K& x, int m0, int S, const uint8_t* g, float* out, size_t ldo) {
  constexpr size_t rec = kLanes * 210;
  const __m512i nib = _mm512_set1_epi8(0x0F), hi2 = _mm512_set1_epi8(0x30);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int s = 0; s < S; ++s) {
    const uint8_t* b = g + s * rec;
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)));
    const RowsAt<R> a(x, m0, S, s);
    __m512i isum[R];
    for (int r = 0; r < R; ++r) isum[r] = _mm512_setzero_si512();
    const __m512i scv[4] = {_mm512_loadu_si512(b + 32), _mm512_loadu_si512(b + 96), _mm512_loadu_si512(b + 160),
                            _mm512_loadu_si512(b + 224)};
#pragma GCC unroll 4
    for (int nh = 0; nh < 4; ++nh) {
      // Values 128n + 32t + 16h .. + 15 (sub-block 8n + 2t + h) of each row r into part[r][t].
      const int n = nh / 2, h = nh % 2;
      __m512i part[R][4];
      for (int r = 0; r < R; ++r)
        for (int t = 0; t < 4; ++t) part[r][t] = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int v = 4 * h; v < 4 * h + 4; ++v) {
        const uint8_t* u = b + 288 + 192 * (8 * n + v);
        const __m512i A = _mm512_loadu_si512(u), B = _mm512_loadu_si512(u + 64), C = _mm512_loadu_si512(u + 128);
        const __m512i t0 = _mm512_or_si512(_mm512_and_si512(A, nib), _mm512_and_si512(_mm512_slli_epi16(C, 4), hi2));
        const __m512i t1 = _mm512_or_si512(_mm512_and_si512(B, nib), _mm512_and_si512(_mm512_slli_epi16(C, 2), hi2));
        const __m512i t2 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(A, 4), nib), _mm512_and_si512(C, hi2));
        const __m512i t3 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(B, 4), nib),
                                           _mm512_and_si512(_mm512_srli_epi16(C, 2), hi2));
        for (int r = 0; r < R; ++r) {
          const int8_t* qv = a.q[r] + 128 * n + 4 * v;
          part[r][0] = q8::dot(part[r][0], t0, qv);
          part[r][1] = q8::dot(part[r][1], t1, qv + 32);
          part[r][2] = q8::dot(part[r][2], t2, qv + 64);
          part[r][3] = q8::dot(part[r][3], t3, qv + 96);
        }
      }
#pragma GCC unroll 4
      for (int t = 0; t < 4; ++t) {
        const int sub = 8 * n + 2 * t + h;
        const __m512i sc = byte_s(scv[sub / 4], sub % 4);
        for (int r = 0; r < R; ++r) {
          // The codes are stored + 32: sc * (sum(code * q) - 32 * sum(q)).
          const __m512i biased = _mm512_sub_epi32(part[r][t], _mm512_set1_epi32(32 * a.sums[r][sub]));
          isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(biased, sc));
        }
      }
    }
    for (int r = 0; r < R; ++r)  // the file's sequence, 16 rows at once
      acc[r] =
          _mm512_add_ps(acc[r], _mm512_mul_ps(_mm512_cvtepi32_ps(isum[r]), _mm512_mul_ps(d, _mm512_set1_ps(a.d[r]))));
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + static_cast<size_t>(r) * ldo, acc[r]);
}

template <int R>
MLXGP_VNNI void iq4xs_tile(const RowsQ8K& x, int m0, int S, const uint8_t* g, float* out, size_t ldo) {
  constexpr size_t rec = kLanes * 136;
  const __m512i nib = _mm512_set1_epi8(0x0F), grid = q8::iq4_grid_u8();
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int s = 0; s < S; ++s) {
    const uint8_t* b = g + s * rec;
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)));
    const __m512i sh = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32)));
    const __m512i sl = _mm512_loadu_si512(b + 64);
    const RowsAt<R> a(x, m0, S, s);
    __m512i isum[R];
    for (int r = 0; r < R; ++r) isum[r] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int ib = 0; ib < 8; ++ib) {
      // iq4_xs_scale on 16 rows: nibble ib % 2 of scales_l byte ib / 2, bits 2ib, 2ib + 1 of scales_h on top.
      const __m512i ls = _mm512_sub_epi32(
          _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(sl, 4 * ib), _mm512_set1_epi32(0xF)),
                          _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(sh, 2 * ib), _mm512_set1_epi32(3)), 4)),
          _mm512_set1_epi32(32));
      __m512i part[R];
      for (int r = 0; r < R; ++r) part[r] = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        const __m512i c = _mm512_loadu_si512(b + 128 + 64 * (4 * ib + v));
        const __m512i wl = _mm512_shuffle_epi8(grid, _mm512_and_si512(c, nib));
        const __m512i wh = _mm512_shuffle_epi8(grid, _mm512_and_si512(_mm512_srli_epi16(c, 4), nib));
        for (int r = 0; r < R; ++r) {
          part[r] = q8::dot(part[r], wl, a.q[r] + 32 * ib + 4 * v);
          part[r] = q8::dot(part[r], wh, a.q[r] + 32 * ib + 16 + 4 * v);
        }
      }
      for (int r = 0; r < R; ++r) {
        // The grid values are taken + 128: ls * (sum((value + 128) * q) - 128 * sum(q)).
        const int32_t bias = 128 * (a.sums[r][2 * ib] + a.sums[r][2 * ib + 1]);
        isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(_mm512_sub_epi32(part[r], _mm512_set1_epi32(bias)), ls));
      }
    }
    for (int r = 0; r < R; ++r)  // the file's sequence, 16 rows at once
      acc[r] =
          _mm512_add_ps(acc[r], _mm512_mul_ps(_mm512_cvtepi32_ps(isum[r]), _mm512_mul_ps(d, _mm512_set1_ps(a.d[r]))));
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + static_cast<size_t>(r) * ldo, acc[r]);
}

// One group of 16 weight rows against activation rows [0, M), two at a time.
template <uint32_t T>
MLXGP_VNNI void group_against(const RowsQ8K& x, int M, int S, const uint8_t* g, float* out, size_t ldo) {
  auto tile = [&]<int R>(int m) {
    if constexpr (T == kGgmlQ4_K || T == kGgmlQ5_K) q45k_tile<R, T == kGgmlQ5_K>(x, m, S, g, out + m * ldo, ldo);
    else if constexpr (T == kGgmlIQ4_XS) iq4xs_tile<R>(x, m, S, g, out + m * ldo, ldo);
    else q6k_tile<R>(x, m, S, g, out + m * ldo, ldo);
  };
  int m = 0;
  for (; m + 2 <= M; m += 2) tile.template operator()<2>(m);
  if (m < M) tile.template operator()<1>(m);
}

template <uint32_t T>
void packed_product(const float* x, int M, int K, const std::vector<GgmlSegment>& segs) {
  constexpr int kChunkRows = 64;
  const int S = K / kSuper;
  RowsQ8K q;
  for (int c0 = 0; c0 < M; c0 += kChunkRows) {
    const int rows = std::min(kChunkRows, M - c0);
    quantize_rows(x + static_cast<size_t>(c0) * K, rows, K, q);
    parallel_rows(total_rows(segs) / kLanes, K * rows * kLanes, [&](int g0, int g1) {
      for_segment_rows(segs, g0 * kLanes, g1 * kLanes, [&](const GgmlSegment& sg, int n0, int n1) {
        for (int n = n0; n < n1; n += kLanes)
          group_against<T>(q, rows, S, sg.w + static_cast<size_t>(n) * sg.row_bytes,
                           sg.out + static_cast<size_t>(c0) * sg.N + n, sg.N);
      });
    });
  }
}

}  // namespace

void ggml_q8k_product(uint32_t type, const float* x, int M, int K, const std::vector<GgmlSegment>& segs) {
  if (M == 0 || segs.empty()) return;
  if (type == kGgmlQ4_K) return product<kGgmlQ4_K>(x, M, K, segs);
  if (type == kGgmlQ6_K) return product<kGgmlQ6_K>(x, M, K, segs);
  if (type == kGgmlQ5_K) return product<kGgmlQ5_K>(x, M, K, segs);
  if (type == kGgmlIQ4_XS) return product<kGgmlIQ4_XS>(x, M, K, segs);
}

void ggml_q8k_packed_product(uint32_t type, const float* x, int M, int K, const std::vector<GgmlSegment>& segs) {
  if (M == 0 || segs.empty()) return;
  if (type == kGgmlQ4_K) return packed_product<kGgmlQ4_K>(x, M, K, segs);
  if (type == kGgmlQ6_K) return packed_product<kGgmlQ6_K>(x, M, K, segs);
  if (type == kGgmlQ5_K) return packed_product<kGgmlQ5_K>(x, M, K, segs);
  if (type == kGgmlIQ4_XS) return packed_product<kGgmlIQ4_XS>(x, M, K, segs);
}

void ggml_q8k_pack(uint32_t type, const uint8_t* w, int N, int K, uint8_t* out) {
  const size_t row_bytes = static_cast<size_t>(K / kSuper) * ggml_block(type).bytes;
  parallel_rows(N / kLanes, K * kLanes, [&](int g0, int g1) {
    for (int g = g0; g < g1; ++g)
      move_group<true>(type, w + g * kLanes * row_bytes, row_bytes, K / kSuper, out + g * kLanes * row_bytes);
  });
}

void ggml_q8k_unpack(uint32_t type, const uint8_t* packed, int N, int K, uint8_t* w) {
  const size_t row_bytes = static_cast<size_t>(K / kSuper) * ggml_block(type).bytes;
  for (int g = 0; g < N / kLanes; ++g)
    move_group<false>(type, w + g * kLanes * row_bytes, row_bytes, K / kSuper, packed + g * kLanes * row_bytes);
}

#else

void ggml_q8k_product(uint32_t, const float*, int, int, const std::vector<GgmlSegment>&) {}
void ggml_q8k_packed_product(uint32_t, const float*, int, int, const std::vector<GgmlSegment>&) {}
void ggml_q8k_pack(uint32_t, const uint8_t*, int, int, uint8_t*) {}
void ggml_q8k_unpack(uint32_t, const uint8_t*, int, int, uint8_t*) {}

#endif

}  // namespace mlxgp::kernels
