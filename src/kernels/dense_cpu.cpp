#include "kernels/dense_cpu.h"
#include "kernels/prefetch.h"
#include "kernels/row_blocks.h"
#include "kernels/simd_exp.h"

#include <cstddef>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 AVX-512 header false positive
#endif

namespace mlxgp::kernels {

namespace {

void rows_portable(const DenseArgs& a, int n0, int n1) {
  for (int n = n0; n < n1; ++n) {
    const float* w = a.w + static_cast<size_t>(n) * a.K;
    for (int m = 0; m < a.M; ++m) {
      const float* x = a.x + static_cast<size_t>(m) * a.K;
      float acc = 0.0f;
      for (int k = 0; k < a.K; ++k) acc += x[k] * w[k];
      a.out[static_cast<size_t>(m) * a.N + n] = acc;
    }
  }
}

#if defined(__x86_64__)

#define MLXGP_AVX2 __attribute__((target("avx2,fma")))
#define MLXGP_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

template <int MB>
MLXGP_AVX2 void rows_avx2(const DenseArgs& a, int m0, int n0, int n1) {
  const int kv = a.K / 16 * 16;
  const float* xr = a.x + static_cast<size_t>(m0) * a.K;
  for (int n = n0; n < n1; ++n) {
    const float* w = a.w + static_cast<size_t>(n) * a.K;
    __m256 acc[MB][2];
    for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
    for (int k = 0; k < kv; k += 16) {
      const __m256 w0 = _mm256_loadu_ps(w + k), w1 = _mm256_loadu_ps(w + k + 8);
      for (int m = 0; m < MB; ++m) {
        const float* xm = xr + static_cast<size_t>(m) * a.K + k;
        acc[m][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xm), acc[m][0]);
        acc[m][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xm + 8), acc[m][1]);
      }
    }
    for (int m = 0; m < MB; ++m) {
      const float* xm = xr + static_cast<size_t>(m) * a.K;
      float s = simd::hsum8(_mm256_add_ps(acc[m][0], acc[m][1]));
      for (int k = kv; k < a.K; ++k) s += xm[k] * w[k];
      a.out[static_cast<size_t>(m0 + m) * a.N + n] = s;
    }
  }
}

template <int MB>
MLXGP_AVX512 void rows_avx512(const DenseArgs& a, int m0, int n0, int n1) {
  const int kv = a.K / 32 * 32;
  const float* xr = a.x + static_cast<size_t>(m0) * a.K;
  // One weight row at a time for every block height, so a row's sum is computed the same way at any
  // batch size. (Two rows per pass, each x load feeding two FMAs, measured slower: 16-24 GB/s instead
  // of 25-33 from DRAM at 4 rows, and 59 instead of 70 GMAC/s from L3, on a 2-core Zen 4.)
  for (int n = n0; n < n1; ++n) {
    const float* w = a.w + static_cast<size_t>(n) * a.K;
    __m512 acc[MB][2];
    for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
    for (int k = 0; k < kv; k += 32) {
      const __m512 w0 = _mm512_loadu_ps(w + k), w1 = _mm512_loadu_ps(w + k + 16);
      prefetch_ahead<128>(w + k);
      for (int m = 0; m < MB; ++m) {
        const float* xm = xr + static_cast<size_t>(m) * a.K + k;
        acc[m][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xm), acc[m][0]);
        acc[m][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xm + 16), acc[m][1]);
      }
    }
    for (int m = 0; m < MB; ++m) {
      const float* xm = xr + static_cast<size_t>(m) * a.K;
      float s = _mm512_reduce_add_ps(_mm512_add_ps(acc[m][0], acc[m][1]));
      for (int k = kv; k < a.K; ++k) s += xm[k] * w[k];
      a.out[static_cast<size_t>(m0 + m) * a.N + n] = s;
    }
  }
}

#endif  // __x86_64__

}  // namespace

void dense_rows(const DenseArgs& a, int n0, int n1, Isa isa) {
#if defined(__x86_64__)
  if (isa != Isa::portable) {
    const size_t row_bytes = static_cast<size_t>(a.K) * sizeof(float);
    if (isa == Isa::avx512) {
      // AVX-512 has the registers for 8 rows, so a batch of 8 reads each weight once (the GGUF and
      // affine row kernels do the same).
      for_weight_tiles<8>(a.M, n0, n1, row_bytes, 16 * 1024,
                          [&](int m0, auto mbc, int t0, int t1) { rows_avx512<decltype(mbc)::value>(a, m0, t0, t1); });
      return;
    }
    for_weight_tiles(a.M, n0, n1, row_bytes, 16 * 1024,
                     [&](int m0, auto mbc, int t0, int t1) { rows_avx2<decltype(mbc)::value>(a, m0, t0, t1); });
    return;
  }
#endif
  rows_portable(a, n0, n1);
}

}  // namespace mlxgp::kernels
