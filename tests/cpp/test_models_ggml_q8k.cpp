// The int8-activation products of the K-quants (src/kernels/ggml_q8k.cpp) against their arithmetic written
// out value by value: llama.cpp's Q8_K rounding of the activations, the exact integer sums and the float
// sequence that file states. llama.cpp itself is the reference in tests/parity/test_int8_activations.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include <mlx/mlx.h>

#include "ggml_test_blocks.h"
#include "kernels/ggml_blocks.h"
#include "kernels/ggml_q8.h"
#include "kernels/kernels.h"
#include "test_models_util.h"

namespace mx = mlx::core;
namespace k = mlxgp::kernels;
using mlxgp::testing::random_blocks;

namespace {

class GgmlQ8K : public mlxgp::testing::CpuDefaultDevice {};

// quantize_row_q8_K_ref: codes, d and the 16-value sums of one row.
struct RowQ8K {
  std::vector<int> q, sums;
  std::vector<float> d;
};
RowQ8K quantize_q8k(const float* x, int K) {
  RowQ8K r{std::vector<int>(K), std::vector<int>(K / 16), std::vector<float>(K / 256)};
  for (int s = 0; s < K / 256; ++s) {
    const float* b = x + 256 * s;
    float amax = 0, max = 0;
    for (int i = 0; i < 256; ++i)
      if (std::fabs(b[i]) > amax) amax = std::fabs(b[i]), max = b[i];
    if (amax == 0) continue;  // d, codes and sums stay zero
    const float iscale = -127.f / max;
    for (int i = 0; i < 256; ++i) r.q[256 * s + i] = std::min(127, static_cast<int>(std::nearbyint(iscale * b[i])));
    for (int g = 0; g < 16; ++g)
      for (int i = 0; i < 16; ++i) r.sums[16 * s + g] += r.q[256 * s + 16 * g + i];
    r.d[s] = 1.f / iscale;
  }
  return r;
}

// One weight super-block: the unsigned code of each value, the scale of each value, the multiplier of each
// 16-value sum (Q4_K: the sub-block's min; Q6_K: 32 times its scale, the codes' bias; IQ4_XS: 128 times),
// d and that sum's factor (Q4_K dmin, Q6_K and IQ4_XS d).
struct SuperRef {
  int code[256], scale[256], mult[16];
  float d, dm;
};
SuperRef unpack(uint32_t type, const uint8_t* b) {
  SuperRef s{};
  if (type == k::kGgmlQ4_K || type == k::kGgmlQ5_K) {
    const bool five = type == k::kGgmlQ5_K;  // qh[32] at 16, qs at 48: bit 2c (2c + 1) of qh[l] adds 16
    s.d = k::half_at(b);
    s.dm = k::half_at(b + 2);
    const uint8_t* q = b + 4;
    for (int j = 0; j < 8; ++j) {
      const int sc = j < 4 ? q[j] & 63 : (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
      const int mn = j < 4 ? q[j + 4] & 63 : (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
      for (int i = 0; i < 32; ++i) s.scale[32 * j + i] = sc;
      s.mult[2 * j] = s.mult[2 * j + 1] = mn;
    }
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        const uint8_t byte = b[(five ? 48 : 16) + 32 * c + l], h = five ? b[16 + l] : 0;
        s.code[64 * c + l] = (byte & 0xF) + ((h >> (2 * c)) & 1) * 16;
        s.code[64 * c + 32 + l] = (byte >> 4) + ((h >> (2 * c + 1)) & 1) * 16;
      }
  } else if (type == k::kGgmlIQ4_XS) {
    // The grid values + 128 as codes, the 6-bit scales - 32, and the codes' bias of 128 per 16-value sum.
    s.d = s.dm = k::half_at(b);
    for (int ib = 0; ib < 8; ++ib) {
      const int sc = k::iq4_xs_scale(b, ib) - 32;
      s.mult[2 * ib] = s.mult[2 * ib + 1] = 128 * sc;
      for (int l = 0; l < 16; ++l) {
        const uint8_t byte = b[8 + 16 * ib + l];
        s.code[32 * ib + l] = k::kIq4NlValues[byte & 0xF] + 128;
        s.code[32 * ib + 16 + l] = k::kIq4NlValues[byte >> 4] + 128;
        s.scale[32 * ib + l] = s.scale[32 * ib + 16 + l] = sc;
      }
    }
  } else {
    s.d = s.dm = k::half_at(b + 208);
    for (int g = 0; g < 16; ++g) {
      const int sc = static_cast<int8_t>(b[192 + g]);
      for (int i = 0; i < 16; ++i) s.scale[16 * g + i] = sc;
      s.mult[g] = 32 * sc;
    }
    for (int n = 0; n < 2; ++n)
      for (int l = 0; l < 32; ++l) {
        const uint8_t *ql = b + 64 * n, h = b[128 + 32 * n + l];
        s.code[128 * n + l] = (ql[l] & 0xF) | (h & 3) << 4;
        s.code[128 * n + 32 + l] = (ql[l + 32] & 0xF) | ((h >> 2) & 3) << 4;
        s.code[128 * n + 64 + l] = (ql[l] >> 4) | ((h >> 4) & 3) << 4;
        s.code[128 * n + 96 + l] = (ql[l + 32] >> 4) | ((h >> 6) & 3) << 4;
      }
  }
  return s;
}

std::vector<float> reference(uint32_t type, const std::vector<float>& x, int M, int K, const uint8_t* w, int N) {
  const int S = K / 256;
  const size_t bytes = k::ggml_block(type).bytes;
  std::vector<float> out(static_cast<size_t>(M) * N);
  for (int m = 0; m < M; ++m) {
    const RowQ8K a = quantize_q8k(&x[static_cast<size_t>(m) * K], K);
    for (int n = 0; n < N; ++n) {
      float acc = 0;
      for (int s = 0; s < S; ++s) {
        const SuperRef b = unpack(type, w + (static_cast<size_t>(n) * S + s) * bytes);
        int isum = 0, msum = 0;
        for (int i = 0; i < 256; ++i) isum += b.code[i] * a.q[256 * s + i] * b.scale[i];
        for (int g = 0; g < 16; ++g) msum += a.sums[16 * s + g] * b.mult[g];
        float p;
        if (type != k::kGgmlQ4_K && type != k::kGgmlQ5_K) {
          p = static_cast<float>(isum - msum) * (b.d * a.d[s]);
        } else {
          p = static_cast<float>(isum) * (b.d * a.d[s]);
          p = p - static_cast<float>(msum) * (b.dm * a.d[s]);
        }
        acc = acc + p;
      }
      out[static_cast<size_t>(m) * N + n] = acc;
    }
  }
  return out;
}

}  // namespace

// Every row count reaches the 4-row tiles and their 1-3 row remainders; prompt-sized M its chunks of 64.
TEST_F(GgmlQ8K, Int8ActivationsFollowTheirArithmeticExactly) {
  uint32_t seed = 900;
  for (uint32_t type : {k::kGgmlQ4_K, k::kGgmlQ5_K, k::kGgmlQ6_K, k::kGgmlIQ4_XS}) {
    if (!k::ggml_q8_supported(type)) {
      EXPECT_THROW(k::ggml_matmul(mx::ones({1, 256}), random_blocks(type, 2, 256, seed++), type, true),
                   std::invalid_argument);
      continue;
    }
    for (int K : {256, 768}) {
      const int N = 19, N16 = 16;
      auto w = random_blocks(type, N, K, seed++);
      for (int M : {1, 2, 3, 4, 6, 9, 70}) {
        SCOPED_TRACE("type " + std::to_string(type) + " K=" + std::to_string(K) + " M=" + std::to_string(M));
        auto x = mx::random::normal({M, K}, mx::float32, 0.0f, 2.0f, mx::random::key(seed++));
        if (M == 6) x = mx::where(mx::less(mx::arange(K), mx::array(256)), mx::array(0.0f), x);  // a zero block
        auto got = k::ggml_matmul(x, w, type, true);
        mx::eval(got, w, x);
        // The repacked kernel (16 rows interleaved) follows the same sequence: equal bit for bit.
        auto w16 = mx::slice(w, {0, 0}, {N16, w.shape(1)});
        auto p16 = k::ggml_q8_pack(w16, type, K);
        ASSERT_TRUE(p16.has_value());
        auto packed = k::ggml_matmul(x, w16, type, true, *p16);
        EXPECT_TRUE(mx::array_equal(packed, mx::slice(got, {0, 0}, {M, N16})).item<bool>());
        std::vector<float> xv(x.data<float>(), x.data<float>() + x.size());
        const auto ref = reference(type, xv, M, K, w.data<uint8_t>(), N);
        ASSERT_EQ(got.shape(), (mx::Shape{M, N}));
        for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(got.data<float>()[i], ref[i]) << "at " << i;
      }
    }
  }
}

// A non-finite activation makes its row's outputs NaN, as in float32, and leaves the other rows alone, as
// stored and repacked.
TEST_F(GgmlQ8K, NonFiniteRows) {
  if (!k::ggml_q8_supported(k::kGgmlQ6_K)) return;
  auto w = random_blocks(k::kGgmlQ6_K, 5, 512, 3);
  std::vector<float> x(3 * 512, 0.5f);
  x[300] = std::nanf("");
  x[512 + 7] = INFINITY;
  auto w16 = random_blocks(k::kGgmlQ4_K, 16, 512, 4);
  auto p16 = k::ggml_q8_pack(w16, k::kGgmlQ4_K, 512);
  ASSERT_TRUE(p16.has_value());
  const auto xa = mx::array(x.data(), {3, 512});
  for (const auto& y : {k::ggml_matmul(xa, w, k::kGgmlQ6_K, true), k::ggml_matmul(xa, w16, k::kGgmlQ4_K, true, *p16)}) {
    mx::eval(y);
    const int N = y.shape(1);
    for (int n = 0; n < N; ++n) {
      EXPECT_TRUE(std::isnan(y.data<float>()[n]));
      EXPECT_TRUE(std::isnan(y.data<float>()[N + n]));
      EXPECT_TRUE(std::isfinite(y.data<float>()[2 * N + n]));
    }
  }
}
