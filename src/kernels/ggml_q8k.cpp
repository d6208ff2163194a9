// Int8-activation products for llama.cpp's Q4_K and Q6_K super-blocks (256 values), as its CPU backend
// computes them (ggml_vec_dot_q4_K_q8_K / q6_K_q8_K): the activations are quantized per 256 values to Q8_K
// (quantize_row_q8_K_ref, which x86 runs: the first value of largest magnitude sets iscale = -127 / max,
// q = min(127, round-half-even(iscale * x)), d = 1 / iscale, and the sums of each 16 q), and each
// super-block's integer products are exact.
//
// The float sequence (ggml_q8.h states the legacy blocks'): per super-block, the weights (unsigned: Q4_K's
// nibbles, Q6_K's 6-bit codes) times the activations summed in pairs and then, times the sub-block scales,
// in pairs again (vpmaddubsw, vpmaddwd) give 16 int32 lanes L, lane u holding values 64j + 4u .. 64j + 4u + 3
// of every 64-value chunk j; the 16-value sums times the mins (Q4_K) or 32 times the scales (Q6_K, whose
// codes are stored + 32) give 8 lanes M, lane v holding sums 2v and 2v + 1. Per lane, in super-block order,
// aL[u] += (d_w * d_x) * float(L[u]) and aM[v] += (dmin_w or d_w) * d_x * float(M[v]); the output is the
// lanes summed in order, aL's less aM's. Every activation row runs the same code, so a batch row equals
// its solo run bit for bit.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
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

MLXGP_VNNI void quantize_rows(const float* x, int M, int K, RowsQ8K& r) {
  const int S = K / kSuper;
  r.q.resize(static_cast<size_t>(M) * K);
  r.d.resize(static_cast<size_t>(M) * S);
  r.sums.resize(static_cast<size_t>(M) * K / 16);
  for (int m = 0; m < M; ++m)
    for (int s = 0; s < S; ++s) {
      const size_t i = static_cast<size_t>(m) * S + s;
      quantize_super(x + i * kSuper, r.q.data() + i * kSuper, r.d[i], r.sums.data() + i * 16);
    }
}

MLXGP_VNNI inline float h2f(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return _cvtsh_ss(v);
}

// One weight super-block unpacked: w[j] = values 64j .. 64j + 63 as unsigned bytes; sc[j] = each value
// pair's scale as 32 int16 lanes; mins = the 16-value sums' multipliers as 16 int16 lanes; d, dmin.
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
MLXGP_VNNI inline void unpack_q4_K(const uint8_t* b, Super& s) {
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
  s.mins = _mm256_permutexvar_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(kQ4KMins.data())),
                                    _mm256_castsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<int64_t>(mn)))));
  const __m512i low = _mm512_set1_epi8(0x0F);
  for (int j = 0; j < 4; ++j) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16 + 32 * j));
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
    s.w[j] = _mm512_and_si512(z, low);
    s.sc[j] = _mm512_permutexvar_epi16(_mm512_load_si512(kQ4KScales[j].data()), scales);
  }
}

// block_q6_K: ql[128], qh[64], int8 scales[16] (one per 16 values), half d. Half n (values 128n ..)
// reads ql[64n ..] and qh[32n ..]: value 128n + 32t + l (t < 4, l < 32) is ql's low (t even) or high
// (t odd) nibble of byte 64n + 32(t & 1) + l, plus bits 2t, 2t + 1 of qh byte 32n + l as bits 4-5; the
// code is stored + 32.
MLXGP_VNNI inline void unpack_q6_K(const uint8_t* b, Super& s) {
  s.d = h2f(b + 208);
  s.dmin = s.d;
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

template <uint32_t T>
MLXGP_VNNI inline void unpack(const uint8_t* b, Super& s) {
  if constexpr (T == kGgmlQ4_K) unpack_q4_K(b, s);
  else unpack_q6_K(b, s);
}

// Weight row w (S super-blocks) against activation rows [m0, m0 + R): out[(m - m0) * ldo]. Each super-block
// is unpacked once for the R rows, whose accumulators stay in registers.
template <uint32_t T, int R>
MLXGP_VNNI void rows_tile(const RowsQ8K& x, int m0, int S, const uint8_t* w, size_t block_bytes, float* out,
                          size_t ldo) {
  __m512 aL[R];
  __m256 aM[R];
  for (int r = 0; r < R; ++r) {
    aL[r] = _mm512_setzero_ps();
    aM[r] = _mm256_setzero_ps();
  }
  for (int s = 0; s < S; ++s) {
    Super sb;
    unpack<T>(w + s * block_bytes, sb);
    for (int r = 0; r < R; ++r) {
      const size_t i = static_cast<size_t>(m0 + r) * S + s;
      const int8_t* q = x.q.data() + i * kSuper;
      __m512i L = _mm512_madd_epi16(_mm512_maddubs_epi16(sb.w[0], _mm512_loadu_si512(q)), sb.sc[0]);
      for (int j = 1; j < 4; ++j)
        L = _mm512_add_epi32(L, _mm512_madd_epi16(_mm512_maddubs_epi16(sb.w[j], _mm512_loadu_si512(q + 64 * j)),
                                                   sb.sc[j]));
      const __m256i sums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.sums.data() + i * 16));
      const __m256i Mi = _mm256_madd_epi16(sums, sb.mins);
      const float dx = x.d[i];
      aL[r] = _mm512_add_ps(aL[r], _mm512_mul_ps(_mm512_set1_ps(sb.d * dx), _mm512_cvtepi32_ps(L)));
      aM[r] = _mm256_add_ps(aM[r], _mm256_mul_ps(_mm256_set1_ps(sb.dmin * dx), _mm256_cvtepi32_ps(Mi)));
    }
  }
  for (int r = 0; r < R; ++r) {
    alignas(64) float l[16], mm[8];
    _mm512_store_ps(l, aL[r]);
    _mm256_store_ps(mm, aM[r]);
    float sl = 0.f, sm = 0.f;
    for (int u = 0; u < 16; ++u) sl += l[u];
    for (int v = 0; v < 8; ++v) sm += mm[v];
    out[static_cast<size_t>(r) * ldo] = sl - sm;
  }
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

}  // namespace

void ggml_q8k_product(uint32_t type, const float* x, int M, int K, const std::vector<GgmlSegment>& segs) {
  if (M == 0 || segs.empty()) return;
  if (type == kGgmlQ4_K) return product<kGgmlQ4_K>(x, M, K, segs);
  if (type == kGgmlQ6_K) return product<kGgmlQ6_K>(x, M, K, segs);
}

#else

void ggml_q8k_product(uint32_t, const float*, int, int, const std::vector<GgmlSegment>&) {}

#endif

}  // namespace mlxgp::kernels
