// dense_gemm: out = x @ W^T for float32 x with more rows than the row kernels take (prefill, large
// batches). BLAS sgemm did this before; Debian's OpenBLAS 0.3.21 picks its Haswell kernels on Zen 4 and
// the fp32 prefill of the default model ran at transformers' speed (486 against 490 tok/s, 124 tokens).
// Here x is transposed once into panels qt [K][P] (P of its rows, padded to 16) and each W row is a
// "key" of prefill_tiles.h's score product: one W element broadcast against 3 x 16 rows (AVX-512) in one
// multiply-add, so the loop is bound by multiply-adds, and W is read once per panel.
#include <algorithm>
#include <cstddef>

#include "kernels/aligned.h"
#include "kernels/dense_cpu.h"
#include "kernels/thread_pool.h"
#include "kernels/tile_isas.h"

namespace mlxgp::kernels {

namespace {

constexpr int kPanelRows = 512;   // x rows per panel: qt is 1.2 MB at K = 576, read from L2 / L3
constexpr int kWeightRows = 48;   // W rows per task: a multiple of both ISAs' kKeys (4 and 6)
constexpr int kPackColumns = 64;  // K columns per packing task

#if defined(__x86_64__)
#define MLXGP_GEMM_AVX2 __attribute__((target("avx2,fma")))

// dst[c][r] = src[r][c] for an 8 x 8 block. Both sides' strides are often multiples of 2 KB (P = 512,
// K = 1536), where a scalar transpose's column of stores all lands in two L1 sets and evicts itself
// (a third of a 500-token prefill went to packing and storing that way); rows of 8 avoid it.
MLXGP_GEMM_AVX2 inline void transpose8(const float* src, size_t ss, float* dst, size_t ds) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ss);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int h = 0; h < 8; h += 4) {
    r[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);
    r[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xEE);
    r[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
    r[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

// dst[c][r] = src[r][c] for r < R, c < C, in 8 x 8 blocks and a scalar rim.
MLXGP_GEMM_AVX2 void transpose(const float* src, size_t ss, float* dst, size_t ds, int R, int C) {
  const int R8 = R / 8 * 8, C8 = C / 8 * 8;
  for (int c = 0; c < C8; c += 8)
    for (int r = 0; r < R8; r += 8) transpose8(src + r * ss + c, ss, dst + c * ds + r, ds);
  for (int r = 0; r < R; ++r)
    for (int c = (r < R8 ? C8 : 0); c < C; ++c) dst[c * ds + r] = src[r * ss + c];
}

// qt[k][i] = x[m0 + i][k] for k in [k0, k1), zero for the padding rows i in [rows, P).
void pack_panel(const DenseArgs& a, int m0, int rows, int P, int k0, int k1, float* qt) {
  transpose(a.x + static_cast<size_t>(m0) * a.K + k0, a.K, qt + static_cast<size_t>(k0) * P, P, rows, k1 - k0);
  for (int k = k0; k < k1; ++k)
    std::fill(qt + static_cast<size_t>(k) * P + rows, qt + static_cast<size_t>(k + 1) * P, 0.f);
}
#endif

}  // namespace

void dense_gemm(const DenseArgs& a, Isa isa) {
#if defined(__x86_64__)
  if (isa != Isa::portable) {
    // Kept between calls (a fresh 1-3 MB buffer page-faults); the tasks below see it through `panel`,
    // since inside them the name would mean the worker thread's own buffer.
    thread_local AlignedVector<float> qt;
    for (int m0 = 0; m0 < a.M; m0 += kPanelRows) {
      const int rows = std::min(kPanelRows, a.M - m0), P = (rows + 15) / 16 * 16;
      qt.resize(static_cast<size_t>(a.K) * P);
      float* panel = qt.data();
      const int packs = (a.K + kPackColumns - 1) / kPackColumns;
      parallel_for(packs, [&](int t) {
        pack_panel(a, m0, rows, P, t * kPackColumns, std::min(a.K, (t + 1) * kPackColumns), panel);
      });
      const int tasks = (a.N + kWeightRows - 1) / kWeightRows;
      parallel_for(tasks, [&](int t) {
        const int n0 = t * kWeightRows, nb = std::min(kWeightRows, a.N - n0);
        thread_local AlignedVector<float> st;
        st.resize(static_cast<size_t>(kWeightRows) * P);
        const float* w = a.w + static_cast<size_t>(n0) * a.K;
        if (isa == Isa::avx512) avx512::tile_scores(panel, P, w, a.K, nb, a.K, st.data());
        else avx2::tile_scores(panel, P, w, a.K, nb, a.K, st.data());
        // out[m0 + i][n0 + j] = st[j][i]
        transpose(st.data(), P, a.out + static_cast<size_t>(m0) * a.N + n0, a.N, nb, rows);
      });
    }
    return;
  }
#endif
  dense_rows(a, 0, a.N, isa);
}

}  // namespace mlxgp::kernels
