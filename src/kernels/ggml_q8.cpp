// Integer dot products for llama.cpp's legacy blocks (see ggml_q8.h for the arithmetic and its one
// float sequence). Two kinds of kernel share that sequence:
// - one activation row (decode, and what is left of a batch): 16 blocks at a time, lanes = the 64 bytes
//   of a block pair (weights unsigned, activations signed); each block's 8 lane sums are folded so the
//   lanes hold blocks, then scaled and summed;
// - 16 or 8 activation rows (batches of 8 or more): lanes = rows. The activations are laid out as
//   [block][4-byte group][row] (q + 128, unsigned, as vpdpbusd's register operand wants); a weight row is
//   decoded once per call to signed bytes, whose 4-byte groups feed vpdpbusd as embedded broadcasts, two
//   weight rows per pass so each activation vector is loaded once for both.
#include "kernels/ggml_q8.h"

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/aligned.h"
#include "kernels/ggml_blocks.h"
#include "kernels/qmm_cpu.h"
#include "kernels/thread_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/q8_block.h"  // last: its pragmas apply to the kernels below
#endif

namespace mlxgp::kernels {

#if defined(__x86_64__)

namespace {

using q8::machine_has_vnni;
using q8::quantize_block;

// ---- activations ----

// Rows quantized for the one-row kernel. Per row, blocks padded with zeros to a multiple of 16; q in
// pairs of blocks (b, b + 1): 64 bytes in element order, or, for the 4-bit formats, as their nibbles
// unpack: b's elements 0-15, b + 1's 0-15, b's 16-31, b + 1's 16-31. d, s, sum per block.
struct RowQ8 {
  int blocks = 0;  // padded
  AlignedVector<int8_t> q;
  AlignedVector<float> d, s;
  AlignedVector<int32_t> sum;
};

MLXGP_VNNI void quantize_rows(const float* x, int rows, int K, bool nibble_order, RowQ8& r) {
  const int B = K / 32;
  r.blocks = (B + 15) / 16 * 16;
  r.q.assign(static_cast<size_t>(rows) * r.blocks * 32, 0);
  r.d.assign(static_cast<size_t>(rows) * r.blocks, 0.f);
  r.s.assign(r.d.size(), 0.f);
  r.sum.assign(r.d.size(), 0);
  alignas(64) int8_t q[32];
  for (int m = 0; m < rows; ++m)
    for (int b = 0; b < B; ++b) {
      const size_t i = static_cast<size_t>(m) * r.blocks + b;
      quantize_block(x + static_cast<size_t>(m) * K + 32 * b, q, r.d[i], r.s[i], r.sum[i]);
      int8_t* pair = r.q.data() + (i & ~size_t{1}) * 32;
      if (!nibble_order) {
        std::memcpy(pair + 32 * (b & 1), q, 32);
      } else {
        std::memcpy(pair + 16 * (b & 1), q, 16);
        std::memcpy(pair + 32 + 16 * (b & 1), q + 16, 16);
      }
    }
}

// Rows quantized for the L-row kernel (one lane group): q [B][8 groups of 4][L rows][4] as q + 128
// (unsigned, as vpdpbusd's register operand wants); d, s [B][L]. Rows past `rows` are zeros.
template <int L>
struct LaneQ8 {
  AlignedVector<uint8_t> q;
  AlignedVector<float> d, s;
};

template <int L>
MLXGP_VNNI void quantize_lanes(const float* x, int rows, int K, LaneQ8<L>& l) {
  const int B = K / 32;
  l.q.assign(static_cast<size_t>(B) * 32 * L, 128);
  l.d.assign(static_cast<size_t>(B) * L, 0.f);
  l.s.assign(l.d.size(), 0.f);
  alignas(64) int8_t q[32];
  for (int r = 0; r < rows; ++r)
    for (int b = 0; b < B; ++b) {
      int32_t sum;
      quantize_block(x + static_cast<size_t>(r) * K + 32 * b, q, l.d[b * L + r], l.s[b * L + r], sum);
      uint8_t* dst = l.q.data() + static_cast<size_t>(b) * 32 * L + 4 * r;
      for (int g = 0; g < 8; ++g)
        for (int j = 0; j < 4; ++j) dst[g * 4 * L + j] = static_cast<uint8_t>(q[4 * g + j] + 128);
    }
}

// ---- weight formats ----
// pair() (the one-row kernel): blocks b and b + 1 (only b when !two) as 64 unsigned bytes w + kBias in
// the order quantize_rows lays out (kNibbleOrder); the kernel removes kBias * sum(q_x). bytes() (the
// lane kernels): one block's true weights as 32 signed bytes in element order.

MLXGP_VNNI inline float h2f(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return _cvtsh_ss(v);
}
MLXGP_VNNI inline __m128i load16(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

// 64 bytes from p, of which only the first `left` are read (zeros for the rest).
MLXGP_VNNI inline __m512i load_upto(const uint8_t* p, int left) {
  if (left <= 0) return _mm512_setzero_si512();
  return _mm512_maskz_loadu_epi8(left >= 64 ? ~__mmask64{0} : ((__mmask64{1} << left) - 1), p);
}

// The halves d (and m, the next half) of blocks 0 .. n - 1 (n <= 16) from `first` on, as floats (zeros
// past n). The blocks' bytes are loaded as 64-byte vectors and the halves picked with word permutes: a
// gather, or scalar loads and one vector reload, costs several times more on Zen 4.
template <int kBlockBytes, bool MIN>
MLXGP_VNNI inline void heads(const uint8_t* first, int n, __m512& d, __m512& m) {
  constexpr int kVectors = (16 * kBlockBytes + 63) / 64;
  const int bytes = n * kBlockBytes;
  alignas(64) static constexpr auto kIndex = [] {
    std::array<int16_t, 16> a{};
    for (int i = 0; i < 16; ++i) a[i] = static_cast<int16_t>(i * kBlockBytes / 2);
    return a;
  }();
  const __m256i word = _mm256_load_si256(reinterpret_cast<const __m256i*>(kIndex.data()));
  __m256i dh = _mm256_setzero_si256(), mh = _mm256_setzero_si256();
#pragma GCC unroll 9
  for (int v = 0; v < kVectors; v += 2) {
    // Vectors v and v + 1 hold words 32v .. 32v + 63: blocks whose d lies there take it, and m, the next
    // word (Q4_1's d words are even, so m never falls past a window's last, odd, word).
    const __m512i a = load_upto(first + 64 * v, bytes - 64 * v),
                  b = load_upto(first + 64 * (v + 1), bytes - 64 * (v + 1));
    const __m512i rel = _mm512_castsi256_si512(_mm256_sub_epi16(word, _mm256_set1_epi16(static_cast<int16_t>(32 * v))));
    const __mmask16 in = _mm256_cmp_epu16_mask(_mm512_castsi512_si256(rel), _mm256_set1_epi16(64), _MM_CMPINT_LT);
    dh = _mm256_mask_mov_epi16(dh, in, _mm512_castsi512_si256(_mm512_permutex2var_epi16(a, rel, b)));
    if constexpr (MIN) {
      const __m512i rel1 = _mm512_add_epi16(rel, _mm512_set1_epi16(1));
      mh = _mm256_mask_mov_epi16(mh, in, _mm512_castsi512_si256(_mm512_permutex2var_epi16(a, rel1, b)));
    }
  }
  const __mmask16 valid = static_cast<__mmask16>((1u << n) - 1);
  d = _mm512_maskz_mov_ps(valid, _mm512_cvtph_ps(dh));
  if constexpr (MIN) m = _mm512_maskz_mov_ps(valid, _mm512_cvtph_ps(mh));
}

// 4-bit nibbles: element j in the low nibble of qs[j], j + 16 in the high one.
template <int kOffset, int kNibbleBias, bool kMin, int kBlockBytes>
struct Nibbles {
  static constexpr int kBytes = kBlockBytes, kBias = kNibbleBias;
  static constexpr bool kHasMin = kMin, kNibbleOrder = true;
  MLXGP_VNNI static __m512i pair(const uint8_t* b, bool two) {
    const __m128i a = load16(b + kOffset), c = two ? load16(b + kBytes + kOffset) : _mm_setzero_si128();
    const __m256i y = _mm256_inserti128_si256(_mm256_castsi128_si256(a), c, 1);
    // [a, c, a, c], the upper half shifted to the high nibbles.
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(y), _mm256_srli_epi16(y, 4), 1);
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
  }
  MLXGP_VNNI static void bytes(const uint8_t* b, int8_t* out) {
    const __m128i q = load16(b + kOffset), m = _mm_set1_epi8(0x0F), bias = _mm_set1_epi8(static_cast<char>(kBias));
    _mm_store_si128(reinterpret_cast<__m128i*>(out), _mm_sub_epi8(_mm_and_si128(q, m), bias));
    _mm_store_si128(reinterpret_cast<__m128i*>(out + 16), _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m), bias));
  }
};
using Q4_0 = Nibbles<2, 8, false, 18>;  // block_q4_0: half d; qs[16]; weight = nibble - 8
using Q4_1 = Nibbles<4, 0, true, 20>;   // block_q4_1: half d, m; qs[16]; weight = nibble (then d * q + m)

// 5-bit weights: the nibbles as above, and element j's fifth bit (16, added to the nibble) is bit j of the
// uint32 qh before qs.
template <int kQh, int kNibbleBias, bool kMin, int kBlockBytes>
struct Fives {
  using Low = Nibbles<kQh + 4, kNibbleBias, kMin, kBlockBytes>;
  static constexpr int kBytes = kBlockBytes, kBias = kNibbleBias;
  static constexpr bool kHasMin = kMin, kNibbleOrder = true;
  static uint32_t qh(const uint8_t* b) {
    uint32_t v;
    std::memcpy(&v, b + kQh, 4);
    return v;
  }
  MLXGP_VNNI static __m512i pair(const uint8_t* b, bool two) {
    // Bytes 0-15: b's elements 0-15, 16-31: b + 1's 0-15, 32-47: b's 16-31, 48-63: b + 1's 16-31.
    const uint64_t h0 = qh(b), h1 = two ? qh(b + kBytes) : 0;
    const uint64_t bits = (h0 & 0xFFFF) | (h1 & 0xFFFF) << 16 | (h0 >> 16) << 32 | (h1 >> 16) << 48;
    const __m512i z = Low::pair(b, two);
    return _mm512_mask_add_epi8(z, _cvtu64_mask64(bits), z, _mm512_set1_epi8(16));
  }
  MLXGP_VNNI static void bytes(const uint8_t* b, int8_t* out) {
    const __m128i q = load16(b + kQh + 4), m = _mm_set1_epi8(0x0F);
    __m256i v =
        _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(q, m)), _mm_and_si128(_mm_srli_epi16(q, 4), m), 1);
    v = _mm256_mask_add_epi8(v, _cvtu32_mask32(qh(b)), v, _mm256_set1_epi8(16));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out), _mm256_sub_epi8(v, _mm256_set1_epi8(static_cast<char>(kBias))));
  }
};
using Q5_0 = Fives<2, 16, false, 22>;  // block_q5_0: half d; uint32 qh; qs[16]; weight = 5-bit value - 16
using Q5_1 = Fives<4, 0, true, 24>;    // block_q5_1: half d, m; uint32 qh; qs[16]; weight = 5-bit value

// block_iq4_nl: Q4_0's layout, each nibble an index into the IQ4 grid (kIq4NlValues). pair() gives the grid
// values + 128 as unsigned bytes (1 .. 241; kBias 128), bytes() the signed values: a byte shuffle per 16.
struct IQ4_NL {
  using Codes = Nibbles<2, 0, false, 18>;
  static constexpr int kBytes = 18, kBias = 128;
  static constexpr bool kHasMin = false, kNibbleOrder = true;
  MLXGP_VNNI static __m128i grid() { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4NlValues)); }
  MLXGP_VNNI static __m512i pair(const uint8_t* b, bool two) {
    // A missing second block's zero codes become grid[0] + 128, multiplied by zero activations.
    return _mm512_shuffle_epi8(q8::iq4_grid_u8(), Codes::pair(b, two));
  }
  MLXGP_VNNI static void bytes(const uint8_t* b, int8_t* out) {
    const __m128i q = load16(b + 2), m = _mm_set1_epi8(0x0F);
    _mm_store_si128(reinterpret_cast<__m128i*>(out), _mm_shuffle_epi8(grid(), _mm_and_si128(q, m)));
    _mm_store_si128(reinterpret_cast<__m128i*>(out + 16),
                    _mm_shuffle_epi8(grid(), _mm_and_si128(_mm_srli_epi16(q, 4), m)));
  }
};

struct Q8_0 {  // block_q8_0: half d; int8 qs[32]
  static constexpr int kBytes = 34, kBias = 128;
  static constexpr bool kHasMin = false, kNibbleOrder = false;
  MLXGP_VNNI static __m512i pair(const uint8_t* b, bool two) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
    const __m256i c =
        two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kBytes + 2)) : _mm256_setzero_si256();
    // The missing block's zeros become 128s, multiplied by zero activations.
    return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(a), c, 1),
                            _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  MLXGP_VNNI static void bytes(const uint8_t* b, int8_t* out) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(out), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2)));
  }
};

// Lane i of the result = the sum of block i's 8 lanes, where v[j] holds blocks 2j and 2j + 1: in
// quarters (128-bit lanes) 0, 1 and 2, 3, or (NIBBLE) 0, 2 and 1, 3. Integer sums: exact in any order.
template <bool NIBBLE>
MLXGP_VNNI inline __m512i fold_blocks(const __m512i* v) {
  __m512i a[4], b[2];
  for (int i = 0; i < 4; ++i)  // per quarter: [v0 x, v1 x, v0 y, v1 y] partial pairs
    a[i] =
        _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 2; ++i)  // per quarter: the four vectors' sums over that quarter
    b[i] =
        _mm512_add_epi32(_mm512_unpacklo_epi64(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_epi64(a[2 * i], a[2 * i + 1]));
  // Add each vector's two quarters of a block: lanes then hold blocks 0 2 4 6 1 3 5 7 8 10 ...
  constexpr int kFirst = NIBBLE ? _MM_SHUFFLE(1, 0, 1, 0) : _MM_SHUFFLE(2, 0, 2, 0);
  constexpr int kSecond = NIBBLE ? _MM_SHUFFLE(3, 2, 3, 2) : _MM_SHUFFLE(3, 1, 3, 1);
  const __m512i s =
      _mm512_add_epi32(_mm512_shuffle_i32x4(b[0], b[1], kFirst), _mm512_shuffle_i32x4(b[0], b[1], kSecond));
  return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15), s);
}

// The integer sums of 16 blocks from b0 (FULL: all 16 exist, else nb of them).
template <class F, bool FULL>
MLXGP_VNNI inline __m512i block_sums(const int8_t* qx, const uint8_t* wr, int b0, int nb) {
  __m512i v[8];
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {
    if (!FULL && 2 * j >= nb) {
      v[j] = _mm512_setzero_si512();
      continue;
    }
    const bool two = FULL || 2 * j + 1 < nb;
    v[j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), F::pair(wr + static_cast<size_t>(b0 + 2 * j) * F::kBytes, two),
                               _mm512_load_si512(qx + static_cast<size_t>(b0 + 2 * j) * 32));
  }
  return fold_blocks<F::kNibbleOrder>(v);
}

MLXGP_VNNI inline float finish(__m128 acc) {
  alignas(16) float p[4];
  _mm_store_ps(p, acc);
  return (p[0] + p[1]) + (p[2] + p[3]);
}

// Activation row m against weight rows [n0, n1): out[n] for each.
template <class F>
MLXGP_VNNI void row_kernel(const RowQ8& x, int m, int B, const uint8_t* w, size_t row_bytes, int n0, int n1,
                           float* out) {
  const size_t base = static_cast<size_t>(m) * x.blocks;
  const int8_t* qx = x.q.data() + base * 32;
  const float* dx = x.d.data() + base;
  const float* sx = x.s.data() + base;
  const int32_t* sumx = x.sum.data() + base;
  // A tail of fewer than 8 blocks goes pair by pair with scalar float steps (the same roundings as the
  // vector lanes), not through a whole fold.
  const int vector_blocks = B % 16 >= 8 ? B : B / 16 * 16;
  constexpr __mmask16 kFirst = F::kNibbleOrder ? 0x0F0F : 0x00FF;
  for (int n = n0; n < n1; ++n) {
    const uint8_t* wr = w + static_cast<size_t>(n) * row_bytes;
    __m128 acc = _mm_setzero_ps();
    for (int b0 = 0; b0 < vector_blocks; b0 += 16) {
      const int nb = std::min(16, B - b0);
      const __mmask16 mask = static_cast<__mmask16>((1u << nb) - 1);
      __m512i isum = nb == 16 ? block_sums<F, true>(qx, wr, b0, 16) : block_sums<F, false>(qx, wr, b0, nb);
      // Padding blocks have zero activations: their sums, d, s are zero.
      if constexpr (F::kBias != 0)
        isum = _mm512_sub_epi32(isum, _mm512_mullo_epi32(_mm512_load_si512(sumx + b0), _mm512_set1_epi32(F::kBias)));
      __m512 dw, mw;
      heads<F::kBytes, F::kHasMin>(wr + static_cast<size_t>(b0) * F::kBytes, nb, dw, mw);
      __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, _mm512_load_ps(dx + b0)));
      if constexpr (F::kHasMin) {
        p = _mm512_fmadd_ps(mw, _mm512_load_ps(sx + b0), p);
      }
      // Block b0 + 4c + i goes to partial i, in block order.
      acc = _mm_mask_add_ps(acc, static_cast<__mmask8>(mask & 0xF), acc, _mm512_castps512_ps128(p));
      acc = _mm_mask_add_ps(acc, static_cast<__mmask8>((mask >> 4) & 0xF), acc, _mm512_extractf32x4_ps(p, 1));
      acc = _mm_mask_add_ps(acc, static_cast<__mmask8>((mask >> 8) & 0xF), acc, _mm512_extractf32x4_ps(p, 2));
      acc = _mm_mask_add_ps(acc, static_cast<__mmask8>((mask >> 12) & 0xF), acc, _mm512_extractf32x4_ps(p, 3));
    }
    for (int b0 = vector_blocks; b0 < B; b0 += 2) {
      const bool two = b0 + 1 < B;
      const __m512i v =
          _mm512_dpbusd_epi32(_mm512_setzero_si512(), F::pair(wr + static_cast<size_t>(b0) * F::kBytes, two),
                              _mm512_load_si512(qx + static_cast<size_t>(b0) * 32));
      alignas(16) float part[4];
      _mm_store_ps(part, acc);
      for (int k = 0; k < (two ? 2 : 1); ++k) {
        const int b = b0 + k;
        int32_t isum = _mm512_mask_reduce_add_epi32(k ? static_cast<__mmask16>(~kFirst) : kFirst, v);
        isum -= F::kBias * sumx[b];
        const uint8_t* blk = wr + static_cast<size_t>(b) * F::kBytes;
        float p = static_cast<float>(isum) * (h2f(blk) * dx[b]);
        if constexpr (F::kHasMin) p = std::fma(h2f(blk + 2), sx[b], p);
        part[b % 4] += p;
      }
      acc = _mm_load_ps(part);
    }
    out[n] = finish(acc);
  }
}

// A weight row decoded for the lane kernels: signed bytes in element order; per block -128 * sum (the
// activations' + 128 times the weights, taken back), d (and m).
struct DecodedRow {
  AlignedVector<int8_t> q;
  AlignedVector<int32_t> base;
  AlignedVector<float> d, m;
  // Padded to whole groups of 16 blocks (the padding's bytes stay zero).
  explicit DecodedRow(int K) : q((K / 32 + 15) / 16 * 16 * 32), base(q.size() / 32), d(base.size()), m(base.size()) {}
};

template <class F>
MLXGP_VNNI void decode_row(const uint8_t* wr, int B, DecodedRow& r) {
  for (int b = 0; b < B; ++b) F::bytes(wr + static_cast<size_t>(b) * F::kBytes, r.q.data() + 32 * b);
  const __m512i ones = _mm512_set1_epi8(1);
  for (int b0 = 0; b0 < B; b0 += 16) {
    // The blocks' sums: dot products with ones, folded to one lane per block.
    __m512i v[8];
    for (int j = 0; j < 8; ++j)
      v[j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_load_si512(r.q.data() + 32 * (b0 + 2 * j)));
    _mm512_store_si512(r.base.data() + b0,
                       _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(fold_blocks<false>(v), 7)));
    __m512 d, m;
    heads<F::kBytes, F::kHasMin>(wr + static_cast<size_t>(b0) * F::kBytes, std::min(16, B - b0), d, m);
    _mm512_store_ps(r.d.data() + b0, d);
    if constexpr (F::kHasMin) _mm512_store_ps(r.m.data() + b0, m);
  }
}

// 16 (zmm) or 8 (ymm) lanes. dot(): vpdpbusd with the 4 weight bytes as an embedded broadcast ({1toL}),
// which GCC does not emit from intrinsics; a separate broadcast costs a third of the throughput on Zen 4.
template <int L>
struct Lanes;
template <>
struct Lanes<16> {
  using I = __m512i;
  using V = __m512;
  MLXGP_VNNI static I bcast(const int32_t* p) { return _mm512_set1_epi32(*p); }
  MLXGP_VNNI static I load(const uint8_t* p) { return _mm512_load_si512(p); }
  MLXGP_VNNI static V zero() { return _mm512_setzero_ps(); }
  MLXGP_VNNI static I dot(I acc, I x, const int8_t* w) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(x), "m"(*reinterpret_cast<const int32_t*>(w)));
    return acc;
  }
  MLXGP_VNNI static I iadd(I a, I b) { return _mm512_add_epi32(a, b); }
  MLXGP_VNNI static V scaled(I isum, const float* dw, const float* dx) {
    return _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(_mm512_set1_ps(*dw), _mm512_load_ps(dx)));
  }
  MLXGP_VNNI static V fmadd(const float* mw, const float* sx, V p) {
    return _mm512_fmadd_ps(_mm512_set1_ps(*mw), _mm512_load_ps(sx), p);
  }
  MLXGP_VNNI static V add(V a, V b) { return _mm512_add_ps(a, b); }
  MLXGP_VNNI static void store(float* y, V v) { _mm512_store_ps(y, v); }
};
template <>
struct Lanes<8> {
  using I = __m256i;
  using V = __m256;
  MLXGP_VNNI static I bcast(const int32_t* p) { return _mm256_set1_epi32(*p); }
  MLXGP_VNNI static I load(const uint8_t* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }
  MLXGP_VNNI static V zero() { return _mm256_setzero_ps(); }
  MLXGP_VNNI static I dot(I acc, I x, const int8_t* w) {
    __asm__("vpdpbusd %2%{1to8%}, %1, %0" : "+v"(acc) : "v"(x), "m"(*reinterpret_cast<const int32_t*>(w)));
    return acc;
  }
  MLXGP_VNNI static I iadd(I a, I b) { return _mm256_add_epi32(a, b); }
  MLXGP_VNNI static V scaled(I isum, const float* dw, const float* dx) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(_mm256_set1_ps(*dw), _mm256_load_ps(dx)));
  }
  MLXGP_VNNI static V fmadd(const float* mw, const float* sx, V p) {
    return _mm256_fmadd_ps(_mm256_set1_ps(*mw), _mm256_load_ps(sx), p);
  }
  MLXGP_VNNI static V add(V a, V b) { return _mm256_add_ps(a, b); }
  MLXGP_VNNI static void store(float* y, V v) { _mm256_store_ps(y, v); }
};

// A decoded weight row's arrays, held in registers across the block loop.
struct RowView {
  const int8_t* q;
  const int32_t* base;
  const float *d, *m;
};

// Block b of a lane group against R (1 or 2) decoded weight rows, into their running partials acc[r]:
// each activation vector is loaded once for the R rows; four integer chains of two products per row.
template <class F, int L, int R>
MLXGP_VNNI inline void lane_block(const uint8_t* xq, const float* xd, const float* xs, const RowView* w, int b,
                                  typename Lanes<L>::V* acc) {
  using T = Lanes<L>;
  const uint8_t* xb = xq + static_cast<size_t>(b) * 32 * L;
  typename T::I i[R][4];
#pragma GCC unroll 2
  for (int r = 0; r < R; ++r) {
    i[r][0] = T::bcast(w[r].base + b);
    i[r][1] = i[r][2] = i[r][3] = typename T::I{};
  }
#pragma GCC unroll 8
  for (int g = 0; g < 8; ++g) {
    const typename T::I xg = T::load(xb + 4 * L * g);
#pragma GCC unroll 2
    for (int r = 0; r < R; ++r) i[r][g & 3] = T::dot(i[r][g & 3], xg, w[r].q + 32 * b + 4 * g);
  }
#pragma GCC unroll 2
  for (int r = 0; r < R; ++r) {
    typename T::V p = T::scaled(T::iadd(T::iadd(i[r][0], i[r][1]), T::iadd(i[r][2], i[r][3])), w[r].d + b, xd + b * L);
    if constexpr (F::kHasMin) p = T::fmadd(w[r].m + b, xs + b * L, p);
    acc[r] = T::add(acc[r], p);
  }
}

// One lane group (`rows` of its L rows real) against R decoded weight rows: out[row * ldo + r].
template <class F, int L, int R>
MLXGP_VNNI void lane_kernel(const LaneQ8<L>& x, int rows, int B, const DecodedRow* const* dec, float* out, size_t ldo) {
  using T = Lanes<L>;
  RowView w[R];
  for (int r = 0; r < R; ++r) w[r] = {dec[r]->q.data(), dec[r]->base.data(), dec[r]->d.data(), dec[r]->m.data()};
  const uint8_t* xq = x.q.data();
  const float *xd = x.d.data(), *xs = x.s.data();
  // Four partials per weight row (block index mod 4), written out so they stay in registers.
  typename T::V a0[R], a1[R], a2[R], a3[R];
#pragma GCC unroll 2
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = a2[r] = a3[r] = T::zero();
  int b = 0;
  for (; b + 4 <= B; b += 4) {
    lane_block<F, L, R>(xq, xd, xs, w, b, a0);
    lane_block<F, L, R>(xq, xd, xs, w, b + 1, a1);
    lane_block<F, L, R>(xq, xd, xs, w, b + 2, a2);
    lane_block<F, L, R>(xq, xd, xs, w, b + 3, a3);
  }
  if (b < B) lane_block<F, L, R>(xq, xd, xs, w, b++, a0);
  if (b < B) lane_block<F, L, R>(xq, xd, xs, w, b++, a1);
  if (b < B) lane_block<F, L, R>(xq, xd, xs, w, b++, a2);
  for (int r = 0; r < R; ++r) {
    alignas(64) float y[L];
    T::store(y, T::add(T::add(a0[r], a1[r]), T::add(a2[r], a3[r])));
    for (int m = 0; m < rows; ++m) out[m * ldo + r] = y[m];
  }
}

// Rows [0, M) of x (at most kChunkRows) against every segment's weight rows (q, k and v of one input in
// one pass: the activations are quantized once and the threads share out the segments' rows). Lane groups
// of 16; a remainder of 9 or more as one padded group of 16, of 4 to 8 as one (padded) group of 8; fewer
// than 4 row by row. Outputs start at row m0 of each segment's [M, N] result.
template <class F>
void product_chunk(const float* x, int M, int K, const std::vector<GgmlSegment>& segs, int m0) {
  const int B = K / 32;
  // Measured on Zen 4 (K=576, N=1536, one core): a padded group beats the one-row kernel from 4 rows on
  // (4 rows: 22 vs 17 GMAC/s, 7: 36 vs 18), and a padded 16-row group beats 8 + singles from 9 (43 vs 31).
  constexpr int kPad16 = 9, kMin8 = 4;
  const int full = M / 16, rest = M % 16;
  const bool pad16 = rest >= kPad16;
  const int eight_rows = !pad16 && rest >= kMin8 ? std::min(rest, 8) : 0;
  const bool eight = eight_rows > 0;
  const int groups16 = full + (pad16 ? 1 : 0);
  const int lane_rows = std::min(M, groups16 * 16 + eight_rows);
  std::vector<LaneQ8<16>> l16(groups16);
  for (int g = 0; g < groups16; ++g)
    quantize_lanes<16>(x + static_cast<size_t>(g) * 16 * K, std::min(16, M - 16 * g), K, l16[g]);
  LaneQ8<8> l8;
  if (eight) quantize_lanes<8>(x + static_cast<size_t>(groups16) * 16 * K, eight_rows, K, l8);
  RowQ8 single;
  const int singles = M - lane_rows;
  quantize_rows(x + static_cast<size_t>(lane_rows) * K, singles, K, F::kNibbleOrder, single);
  parallel_rows(total_rows(segs), K * M, [&](int g0, int g1) {
    DecodedRow dec0(lane_rows ? K : 0), dec1(lane_rows ? K : 0);
    const DecodedRow* decs[2] = {&dec0, &dec1};
    for_segment_rows(segs, g0, g1, [&](const GgmlSegment& sg, int n0, int n1) {
      const uint8_t* w = sg.w;
      const size_t row_bytes = sg.row_bytes, ldo = sg.N;
      float* out = sg.out + static_cast<size_t>(m0) * ldo;
      // R weight rows from n on against every lane group.
      auto lanes = [&]<int R>(int n) {
        for (int g = 0; g < groups16; ++g)
          lane_kernel<F, 16, R>(l16[g], std::min(16, M - 16 * g), B, decs, out + static_cast<size_t>(16 * g) * ldo + n,
                                ldo);
        if (eight)
          lane_kernel<F, 8, R>(l8, eight_rows, B, decs, out + static_cast<size_t>(16 * groups16) * ldo + n, ldo);
      };
      // Weight tiles of about 16 KiB, so the row-by-row kernel reads each tile from L1/L2 after the first row.
      const int tile = std::max(1, static_cast<int>(16 * 1024 / std::max<size_t>(row_bytes, 1)));
      for (int t0 = n0; t0 < n1; t0 += tile) {
        const int t1 = std::min(n1, t0 + tile);
        if (lane_rows) {
          int n = t0;
          for (; n + 2 <= t1; n += 2) {
            decode_row<F>(w + static_cast<size_t>(n) * row_bytes, B, dec0);
            decode_row<F>(w + static_cast<size_t>(n + 1) * row_bytes, B, dec1);
            lanes.template operator()<2>(n);
          }
          if (n < t1) {
            decode_row<F>(w + static_cast<size_t>(n) * row_bytes, B, dec0);
            lanes.template operator()<1>(n);
          }
        }
        for (int m = 0; m < singles; ++m)
          row_kernel<F>(single, m, B, w, row_bytes, t0, t1, out + static_cast<size_t>(lane_rows + m) * ldo);
      }
    });
  });
}

// Prompt-sized M in chunks whose activations stay in L2 while every weight row passes over them.
template <class F>
void product(const float* x, int M, int K, const std::vector<GgmlSegment>& segs) {
  constexpr int kChunkRows = 64;
  for (int m0 = 0; m0 < M; m0 += kChunkRows)
    product_chunk<F>(x + static_cast<size_t>(m0) * K, std::min(kChunkRows, M - m0), K, segs, m0);
}

}  // namespace

bool ggml_q8_supported(uint32_t type) {
  return ggml_q8_type(type) && !kernels_disabled() && detect_isa() == Isa::avx512 && machine_has_vnni();
}

std::string ggml_q8_unsupported_reason(uint32_t type) {
  const std::string what = "int8 activations need ";
  if (!ggml_q8_type(type))
    return what + "llama.cpp " + kGgmlQ8Types + " blocks (ggml type " + std::to_string(type) + " is none of them)";
  if (kernels_disabled()) return what + "mlxgp's CPU kernels (MLXGP_DISABLE_KERNELS is set)";
  return what + "a CPU with AVX-512 VNNI";
}

void ggml_q8_product(uint32_t type, const float* x, int M, int K, const std::vector<GgmlSegment>& segs) {
  if (M == 0 || segs.empty()) return;
  switch (type) {
    case kGgmlQ4_0:
      return product<Q4_0>(x, M, K, segs);
    case kGgmlQ4_1:
      return product<Q4_1>(x, M, K, segs);
    case kGgmlQ5_0:
      return product<Q5_0>(x, M, K, segs);
    case kGgmlQ5_1:
      return product<Q5_1>(x, M, K, segs);
    case kGgmlQ8_0:
      return product<Q8_0>(x, M, K, segs);
    case kGgmlIQ4_NL:
      return product<IQ4_NL>(x, M, K, segs);
    default:
      if (ggml_q8k_type(type)) return ggml_q8k_product(type, x, M, K, segs);
      break;
  }
}

#else

bool ggml_q8_supported(uint32_t) { return false; }
std::string ggml_q8_unsupported_reason(uint32_t) { return "int8 activations need an x86-64 CPU with AVX-512 VNNI"; }
void ggml_q8_product(uint32_t, const float*, int, int, const std::vector<GgmlSegment>&) {}

#endif

}  // namespace mlxgp::kernels
