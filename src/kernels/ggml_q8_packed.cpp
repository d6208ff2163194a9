// The int8-activation product over weights repacked at load (as llama.cpp's CPU "repack" buffers do):
// 16 weight rows interleaved per block, so one 64-byte load holds 4 weights of each of the 16 rows and a
// vpdpbusd multiplies them by 4 activations broadcast from memory. The weights of a block are unpacked
// into registers once and serve every activation row (the as-stored lane kernels decode each weight row
// per call, which cost as much as the products at 8 rows), and lanes are output rows at any M, so one
// row runs the same kernel as a batch.
//
// Per (16 rows, block) record: the 16 d halves, the 16 m halves (Q4_1, Q5_1), then the weights:
// - Q4_0 / Q4_1 / IQ4_NL: 4 vectors; vector j, lane i = bytes 4j .. 4j + 3 of row i's qs, whose low nibbles
//   are elements 4j .. 4j + 3 and high nibbles 16 + 4j .. 16 + 4j + 3 (qs[t] holds t and t + 16); IQ4_NL's
//   codes become their grid values + 128 when unpacked;
// - Q8_0: 8 vectors; vector g, lane i = row i's elements 4g .. 4g + 3 plus 128 (unsigned, as vpdpbusd's
//   register operand wants).
// - Q5_0 / Q5_1: the Q4 vectors, after 8 masks of 64 bits (the 16 rows' qh rearranged): bit 4i + k of
//   mask v is the fifth bit of the weight in byte k of lane i of unpacked vector v (vectors 0-3 the low
//   nibbles, 4-7 the high ones), which is element 4v + k of row i: nibble v of row i's qh.
// A record is 16 blocks' bytes, so a packed weight keeps the stored shape [N, row bytes].
//
// The integer sums equal ggml_q8.cpp's exactly (the nibbles times the activations, less 8, 16 or 128
// times the activations' sum for Q4_0 / Q5_0 / Q8_0), and the floats follow the one sequence ggml_q8.h states, so a
// packed product equals the as-stored one bit for bit.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/aligned.h"
#include "kernels/ggml_blocks.h"
#include "kernels/ggml_q8.h"
#include "kernels/prefetch.h"
#include "kernels/qmm_cpu.h"
#include "kernels/thread_pool.h"

#if defined(__x86_64__)
#include "kernels/q8_block.h"  // last: its pragmas apply to the kernels below
#endif

namespace mlxgp::kernels {

namespace {

constexpr int kLanes = 16;
// Activation rows per register tile: 4 rows x 4 partials beside a block's 8 weight vectors fit the 32
// registers (one core pair, K 576 x N 1536 in cache: 8 rows 245 GMAC/s, 3 or 2 rows a tile 200-220).
constexpr int kRowTile = 4;

// Per format: bytes per stored block, where its qs start, where a record's weights start (after the d
// halves, the m halves for Q4_1 / Q5_1 and the fifth-bit masks for Q5_0 / Q5_1), the bias subtracted from
// the integer sum (times the activations' block sum), and for Q5_0 / Q5_1 where the stored qh and the
// record's masks are (0: none).
struct PackedFormat {
  int block_bytes, qs_offset, weights_offset, bias;
  bool has_min;
  int qh_offset = 0, masks_offset = 0;
};
constexpr PackedFormat format_of(uint32_t type) {
  switch (type) {
    case kGgmlQ4_0:
      return {18, 2, 32, 8, false};
    case kGgmlQ4_1:
      return {20, 4, 64, 0, true};
    case kGgmlQ5_0:
      return {22, 6, 96, 16, false, 2, 32};
    case kGgmlQ5_1:
      return {24, 8, 128, 0, true, 4, 64};
    case kGgmlQ8_0:
      return {34, 2, 32, 128, false};
    case kGgmlIQ4_NL:
      return {18, 2, 32, 128, false};
    default:
      return {0, 0, 0, 0, false};
  }
}

// Row i's qh (the stored uint32) to and from its nibbles in the record's 8 masks (see the top).
void pack_qh(const uint8_t* qh, int i, uint8_t* masks) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  for (int v = 0; v < 8; ++v) {
    uint64_t m;
    std::memcpy(&m, masks + 8 * v, 8);
    m |= static_cast<uint64_t>((h >> (4 * v)) & 0xF) << (4 * i);
    std::memcpy(masks + 8 * v, &m, 8);
  }
}
void unpack_qh(const uint8_t* masks, int i, uint8_t* qh) {
  uint32_t h = 0;
  for (int v = 0; v < 8; ++v) {
    uint64_t m;
    std::memcpy(&m, masks + 8 * v, 8);
    h |= static_cast<uint32_t>((m >> (4 * i)) & 0xF) << (4 * v);
  }
  std::memcpy(qh, &h, 4);
}

// Moves 16 rows of B blocks between the stored layout (rows row_bytes apart) and their records, either
// way: PACK reads stored and writes packed, else the reverse (Q8_0's + 128 is its own inverse).
template <bool PACK>
void move_group(uint32_t type, std::conditional_t<PACK, const uint8_t*, uint8_t*> stored, size_t row_bytes, int B,
                std::conditional_t<PACK, uint8_t*, const uint8_t*> packed) {
  const PackedFormat f = format_of(type);
  const size_t rec = static_cast<size_t>(kLanes) * f.block_bytes;
  auto move = [](auto* s, auto* p, int n) {
    if constexpr (PACK) std::memcpy(p, s, n);
    else std::memcpy(s, p, n);
  };
  for (int b = 0; b < B; ++b) {
    auto* r = packed + b * rec;
    if constexpr (PACK)
      if (f.masks_offset) std::memset(r + f.masks_offset, 0, 64);  // pack_qh ORs each row's bits in
    for (int i = 0; i < kLanes; ++i) {
      auto* src = stored + i * row_bytes + static_cast<size_t>(b) * f.block_bytes;
      move(src, r + 2 * i, 2);                          // d
      if (f.has_min) move(src + 2, r + 32 + 2 * i, 2);  // m
      if (f.masks_offset) {
        if constexpr (PACK) pack_qh(src + f.qh_offset, i, r + f.masks_offset);
        else unpack_qh(r + f.masks_offset, i, src + f.qh_offset);
      }
      auto* qs = src + f.qs_offset;
      auto* q = r + f.weights_offset + 4 * i;
      if (type == kGgmlQ8_0) {
        for (int g = 0; g < 8; ++g)
          for (int k = 0; k < 4; ++k) {
            if constexpr (PACK) q[64 * g + k] = static_cast<uint8_t>(qs[4 * g + k] ^ 0x80);
            else qs[4 * g + k] = static_cast<uint8_t>(q[64 * g + k] ^ 0x80);
          }
      } else {
        for (int j = 0; j < 4; ++j) move(qs + 4 * j, q + 64 * j, 4);
      }
    }
  }
}

#if defined(__x86_64__)

using q8::dot;
using q8::quantize_block;

// Activation rows quantized in element order: q [M][B][32], and d, s, sum [M][B].
struct RowsQ8 {
  AlignedVector<int8_t> q;
  AlignedVector<float> d, s;
  AlignedVector<int32_t> sum;
};

MLXGP_VNNI void quantize_range(const float* x, int K, RowsQ8& r, int m0, int m1) {
  const int B = K / 32;
  for (int m = m0; m < m1; ++m)
    for (int b = 0; b < B; ++b) {
      const size_t i = static_cast<size_t>(m) * B + b;
      quantize_block(x + static_cast<size_t>(m) * K + 32 * b, r.q.data() + 32 * i, r.d[i], r.s[i], r.sum[i]);
    }
}

// Rows in parallel: at prefill the caller's thread quantizing 64 rows alone left the other idle (2% of a
// Q4_0 int8 prefill's samples).
void quantize(const float* x, int M, int K, RowsQ8& r) {
  r.q.resize(static_cast<size_t>(M) * K);
  r.d.resize(static_cast<size_t>(M) * (K / 32));
  r.s.resize(r.d.size());
  r.sum.resize(r.d.size());
  parallel_rows(M, 8 * K, [&](int m0, int m1) { quantize_range(x, K, r, m0, m1); });
}

// One block of 16 weight rows, unpacked into registers.
template <uint32_t T>
struct Block {
  __m512i w[8];
  __m512 d, m;
  MLXGP_VNNI explicit Block(const uint8_t* r) {
    constexpr PackedFormat f = format_of(T);
    d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r)));
    if constexpr (f.has_min) m = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + 32)));
    const uint8_t* q = r + f.weights_offset;
    if constexpr (T == kGgmlQ8_0) {
      for (int g = 0; g < 8; ++g) w[g] = _mm512_loadu_si512(q + 64 * g);
    } else {
      const __m512i low = _mm512_set1_epi8(0x0F);
      for (int j = 0; j < 4; ++j) {
        const __m512i v = _mm512_loadu_si512(q + 64 * j);
        w[j] = _mm512_and_si512(v, low);
        w[j + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
      }
      if constexpr (T == kGgmlIQ4_NL) {
        // The codes' grid values + 128 (bias 128).
        const __m512i grid = q8::iq4_grid_u8();
        for (int v = 0; v < 8; ++v) w[v] = _mm512_shuffle_epi8(grid, w[v]);
      }
      if constexpr (f.masks_offset != 0) {
        const __m512i five = _mm512_set1_epi8(16);
        for (int v = 0; v < 8; ++v) {
          uint64_t bits;
          std::memcpy(&bits, r + f.masks_offset + 8 * v, 8);
          w[v] = _mm512_mask_add_epi8(w[v], _cvtu64_mask64(bits), w[v], five);
        }
      }
    }
  }
  // p_b for the 16 rows against activation row block (q, d, s, sum): float(isum) * (d_w * d_x)
  // [+ m_w * s_x], as ggml_q8.h's sequence.
  MLXGP_VNNI __m512 product(const int8_t* q, float dx, float sx, int32_t sum) const {
    constexpr PackedFormat f = format_of(T);
    __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int g = 0; g < 8; g += 2) {
      a = dot(a, w[g], q + 4 * g);
      b = dot(b, w[g + 1], q + 4 * g + 4);
    }
    __m512i isum = _mm512_add_epi32(a, b);
    if constexpr (f.bias != 0) isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(f.bias * sum));
    __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d, _mm512_set1_ps(dx)));
    if constexpr (f.has_min) p = _mm512_fmadd_ps(m, _mm512_set1_ps(sx), p);
    return p;
  }
};

// Block b of the group into partial P of each of the R rows' sums (a function of its own, not a lambda:
// clang compiles a lambda without its enclosing function's target attribute).
template <uint32_t T, int R, int P>
MLXGP_VNNI inline void add_block(const RowsQ8& x, int m0, int B, const uint8_t* g, int b, __m512 (*a)[4]) {
  constexpr size_t rec = static_cast<size_t>(kLanes) * format_of(T).block_bytes;
  prefetch_ahead<rec>(g + b * rec);  // groups follow each other: one stream
  const Block<T> blk(g + b * rec);
  for (int r = 0; r < R; ++r) {
    const size_t i = static_cast<size_t>(m0 + r) * B + b;
    a[r][P] = _mm512_add_ps(a[r][P], blk.product(x.q.data() + 32 * i, x.d[i], x.s[i], x.sum[i]));
  }
}

// 16 weight rows (one group of records) against activation rows [m0, m0 + R): out[(m - m0) * ldo + i],
// i < 16. Each row keeps four partials (block index mod 4) in registers; a block's rows are unpacked once
// for the R activation rows. The sums are those of ggml_q8.h's sequence whatever R is.
template <uint32_t T, int R>
MLXGP_VNNI void rows_kernel(const RowsQ8& x, int m0, int B, const uint8_t* g, float* out, size_t ldo) {
  __m512 a[R][4];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < 4; ++p) a[r][p] = _mm512_setzero_ps();
  int b = 0;
  for (; b + 4 <= B; b += 4) {
    add_block<T, R, 0>(x, m0, B, g, b, a);
    add_block<T, R, 1>(x, m0, B, g, b + 1, a);
    add_block<T, R, 2>(x, m0, B, g, b + 2, a);
    add_block<T, R, 3>(x, m0, B, g, b + 3, a);
  }
  if (b < B) add_block<T, R, 0>(x, m0, B, g, b, a);
  if (b + 1 < B) add_block<T, R, 1>(x, m0, B, g, b + 1, a);
  if (b + 2 < B) add_block<T, R, 2>(x, m0, B, g, b + 2, a);
  for (int r = 0; r < R; ++r)
    _mm512_storeu_ps(out + static_cast<size_t>(r) * ldo,
                     _mm512_add_ps(_mm512_add_ps(a[r][0], a[r][1]), _mm512_add_ps(a[r][2], a[r][3])));
}

// 16 weight rows against activation rows [0, M), kRowTile rows at a time.
template <uint32_t T>
MLXGP_VNNI void group_kernel(const RowsQ8& x, int M, int B, const uint8_t* g, float* out, size_t ldo) {
  static_assert(kRowTile == 4, "the remainders below are 1 to 3 rows");
  int m = 0;
  for (; m + kRowTile <= M; m += kRowTile) rows_kernel<T, kRowTile>(x, m, B, g, out + m * ldo, ldo);
  switch (M - m) {
    case 3:
      return rows_kernel<T, 3>(x, m, B, g, out + m * ldo, ldo);
    case 2:
      return rows_kernel<T, 2>(x, m, B, g, out + m * ldo, ldo);
    case 1:
      return rows_kernel<T, 1>(x, m, B, g, out + m * ldo, ldo);
    default:
      return;
  }
}

// Rows [0, M) of x against every segment (q, k and v of one input in one pass; each segment's N a
// multiple of 16), outputs from row m0 of each segment's [M, N] result.
template <uint32_t T>
void product_chunk(const float* x, int M, int K, const std::vector<GgmlSegment>& segs, int m0) {
  const int B = K / 32;
  RowsQ8 q;
  quantize(x, M, K, q);
  parallel_rows(total_rows(segs) / kLanes, K * M * kLanes, [&](int g0, int g1) {
    for_segment_rows(segs, g0 * kLanes, g1 * kLanes, [&](const GgmlSegment& sg, int n0, int n1) {
      for (int n = n0; n < n1; n += kLanes)
        group_kernel<T>(q, M, B, sg.w + static_cast<size_t>(n) * sg.row_bytes,
                        sg.out + static_cast<size_t>(m0) * sg.N + n, sg.N);
    });
  });
}

// Prompt-sized M in chunks whose activations stay in L2 while every weight group passes over them.
template <uint32_t T>
void product(const float* x, int M, int K, const std::vector<GgmlSegment>& segs) {
  constexpr int kChunkRows = 64;
  for (int m0 = 0; m0 < M; m0 += kChunkRows)
    product_chunk<T>(x + static_cast<size_t>(m0) * K, std::min(kChunkRows, M - m0), K, segs, m0);
}

#endif

}  // namespace

bool ggml_q8_packable(uint32_t type, int N) { return ggml_q8_supported(type) && N > 0 && N % kLanes == 0; }

void ggml_q8_pack(uint32_t type, const uint8_t* w, int N, int K, uint8_t* out) {
  if (ggml_q8k_type(type)) return ggml_q8k_pack(type, w, N, K, out);
  const size_t row_bytes = static_cast<size_t>(K / 32) * format_of(type).block_bytes;
  parallel_rows(N / kLanes, K * kLanes, [&](int g0, int g1) {
    for (int g = g0; g < g1; ++g)
      move_group<true>(type, w + g * kLanes * row_bytes, row_bytes, K / 32, out + g * kLanes * row_bytes);
  });
}

void ggml_q8_unpack(uint32_t type, const uint8_t* packed, int N, int K, uint8_t* w) {
  if (ggml_q8k_type(type)) return ggml_q8k_unpack(type, packed, N, K, w);
  const size_t row_bytes = static_cast<size_t>(K / 32) * format_of(type).block_bytes;
  for (int g = 0; g < N / kLanes; ++g)
    move_group<false>(type, w + g * kLanes * row_bytes, row_bytes, K / 32, packed + g * kLanes * row_bytes);
}

void ggml_q8_packed_product(uint32_t type, const float* x, int M, int K, const std::vector<GgmlSegment>& segs) {
  if (M == 0 || segs.empty()) return;
  if (ggml_q8k_type(type)) return ggml_q8k_packed_product(type, x, M, K, segs);
#if defined(__x86_64__)
  switch (type) {
    case kGgmlQ4_0:
      return product<kGgmlQ4_0>(x, M, K, segs);
    case kGgmlQ4_1:
      return product<kGgmlQ4_1>(x, M, K, segs);
    case kGgmlQ5_0:
      return product<kGgmlQ5_0>(x, M, K, segs);
    case kGgmlQ5_1:
      return product<kGgmlQ5_1>(x, M, K, segs);
    case kGgmlQ8_0:
      return product<kGgmlQ8_0>(x, M, K, segs);
    case kGgmlIQ4_NL:
      return product<kGgmlIQ4_NL>(x, M, K, segs);
    default:
      break;
  }
#endif
}

}  // namespace mlxgp::kernels
