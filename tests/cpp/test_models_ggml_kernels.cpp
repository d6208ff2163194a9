// llama.cpp block formats kept as stored (kernels::ggml_matmul / ggml_dequantize): the AVX-512 decoders
// (ggml_rows.cpp) and the tiled fallback against the scalar port of ggml-quants.c, and that port on
// hand-computed blocks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include <mlx/mlx.h>

#include "kernels/ggml_blocks.h"
#include "kernels/ggml_q8.h"
#include "kernels/kernels.h"
#include "kernels/qmm_cpu.h"
#include "ggml_test_blocks.h"
#include "test_models_util.h"

namespace mx = mlx::core;
namespace k = mlxgp::kernels;
using mlxgp::testing::random_blocks;

namespace {

float max_rel(const mx::array& a, const mx::array& b) {
  auto d = mx::max(mx::abs(mx::subtract(a, b))).item<float>();
  return d / (mx::max(mx::abs(b)).item<float>() + 1e-30f);
}

// The scalar reference (dequantize_ggml_row, ggml-quants.c's loops) of every row of w.
mx::array scalar_dequantize(const mx::array& w, uint32_t type, int K) {
  const int rows = w.shape(0), row_bytes = w.shape(1);
  std::vector<float> out(static_cast<size_t>(rows) * K);
  const uint8_t* p = w.data<uint8_t>();
  for (int r = 0; r < rows; ++r) k::dequantize_ggml_row(type, p + static_cast<size_t>(r) * row_bytes, &out[r * K], K);
  return mx::array(out.data(), {rows, K}, mx::float32);
}

// The ISAs whose kernels this machine runs: AVX-512 takes the fused decoders, AVX2 the tiled route.
std::vector<k::Isa> machine_isas() {
  std::vector<k::Isa> v;
  if (k::machine_isa() == k::Isa::avx512) v.push_back(k::Isa::avx512);
  if (k::machine_isa() != k::Isa::portable) v.push_back(k::Isa::avx2);
  return v;
}

const uint32_t kAllTypes[] = {k::kGgmlQ4_0, k::kGgmlQ4_1, k::kGgmlQ5_0, k::kGgmlQ5_1, k::kGgmlQ8_0,   k::kGgmlQ2_K,
                              k::kGgmlQ3_K, k::kGgmlQ4_K, k::kGgmlQ5_K, k::kGgmlQ6_K, k::kGgmlIQ4_NL, k::kGgmlIQ4_XS};

class GgmlKernels : public mlxgp::testing::CpuDefaultDevice {};

}  // namespace

TEST_F(GgmlKernels, MatmulEqualsDequantizeThenMatmul) {
  uint32_t seed = 1;
  for (k::Isa isa : machine_isas()) {
    k::cap_isa(isa);
    for (uint32_t type : kAllTypes)
      // 67 x 512: partial tiles, 1 to 8 rows and the fused kernel's 8-row blocks (13, 40 rows on
      // AVX-512; dequantize + BLAS on AVX2), 100 rows: dequantize + BLAS everywhere. 1031 x 768: threads.
      for (auto [N, K, Ms] : {std::tuple{67, 512, std::vector<int>{1, 3, 8, 13, 40, 100}},
                              std::tuple{1031, 768, std::vector<int>{1, 13}}})
        for (int M : Ms) {
          SCOPED_TRACE("isa " + std::to_string(static_cast<int>(isa)) + " type " + std::to_string(type) +
                       " M=" + std::to_string(M) + " N=" + std::to_string(N));
          auto w = random_blocks(type, N, K, seed++);
          auto x = mx::random::normal({M, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed++));
          auto ref = mx::matmul(x, mx::transpose(scalar_dequantize(w, type, K)));
          auto got = k::ggml_matmul(x, w, type);
          mx::eval(ref, got);
          ASSERT_EQ(got.shape(), (mx::Shape{M, N}));
          EXPECT_LE(max_rel(got, ref), 1e-5f);
        }
  }
  k::cap_isa(k::Isa::avx512);
}

// The SIMD decoders reproduce the scalar port value for value (up to the compiler contracting the
// port's d * q + m into one FMA, a rounding's difference).
TEST_F(GgmlKernels, SimdDequantizeEqualsScalarPort) {
  uint32_t seed = 100;
  for (k::Isa isa : machine_isas()) {
    k::cap_isa(isa);
    for (uint32_t type : kAllTypes) {
      SCOPED_TRACE("isa " + std::to_string(static_cast<int>(isa)) + " type " + std::to_string(type));
      auto w = random_blocks(type, 37, 1024, seed++);
      auto got = k::ggml_dequantize(w, type, 1024);
      auto ref = scalar_dequantize(w, type, 1024);
      mx::eval(got, ref);
      EXPECT_LE(max_rel(got, ref), 1e-6f);
    }
  }
  k::cap_isa(k::Isa::avx512);
}

TEST_F(GgmlKernels, BatchedInputsDtypesAndGradient) {
  auto w = random_blocks(k::kGgmlQ6_K, 40, 256, 7);
  auto x = mx::random::normal({2, 3, 256}, mx::float32, 0.0f, 1.0f, mx::random::key(8));
  auto dense = k::ggml_dequantize(w, k::kGgmlQ6_K, 256);
  auto got = k::ggml_matmul(x, w, k::kGgmlQ6_K);
  EXPECT_EQ(got.shape(), (mx::Shape{2, 3, 40}));
  EXPECT_LE(max_rel(got, mx::matmul(x, mx::transpose(dense))), 1e-5f);
  auto gh = k::ggml_matmul(mx::astype(x, mx::bfloat16), w, k::kGgmlQ6_K);
  EXPECT_EQ(gh.dtype(), mx::bfloat16);
  // dx of sum(x W^T) is the column sums of W, broadcast over the rows of x.
  auto grad = mx::grad([&](const mx::array& xx) { return mx::sum(k::ggml_matmul(xx, w, k::kGgmlQ6_K)); })(x);
  auto expect = mx::broadcast_to(mx::sum(dense, 0), x.shape());
  EXPECT_LE(max_rel(grad, expect), 1e-5f);
  // Gathered rows (an embedding lookup) dequantize like the whole table's rows.
  auto idx = mx::array({5, 0, 39});
  auto rows = k::ggml_dequantize(mx::take(w, idx, 0), k::kGgmlQ6_K, 256);
  EXPECT_EQ(max_rel(rows, mx::take(dense, idx, 0)), 0.0f);
}

TEST_F(GgmlKernels, RejectsMismatchedBlocks) {
  auto w = random_blocks(k::kGgmlQ6_K, 4, 256, 9);
  auto x = mx::ones({1, 512});
  EXPECT_THROW(k::ggml_matmul(x, w, k::kGgmlQ6_K), std::invalid_argument);
  EXPECT_THROW(k::ggml_dequantize(w, 99, 256), std::invalid_argument);
  EXPECT_FALSE(k::ggml_type_supported(k::kGgmlF16));
  EXPECT_EQ(k::ggml_row_bytes(k::kGgmlQ6_K, 512), 420);
  EXPECT_EQ(k::ggml_row_bytes(k::kGgmlQ6_K, 576), 0);
}

// Hand-built blocks: Q8_0 and Q4_0 with d = 1 (values are the codes), Q6_K with d = 0.5, scales 2, and
// IQ4_NL / IQ4_XS on the IQ4 grid.
TEST_F(GgmlKernels, DequantizesHandBuiltBlocks) {
  std::vector<uint8_t> q8(34);
  const uint16_t one = 0x3C00, half = 0x3800;
  std::memcpy(q8.data(), &one, 2);
  for (int j = 0; j < 32; ++j) q8[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 16));
  std::vector<float> y(256);
  k::dequantize_ggml_row(k::kGgmlQ8_0, q8.data(), y.data(), 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], j - 16);
  std::vector<uint8_t> q4(18);
  std::memcpy(q4.data(), &one, 2);
  for (int j = 0; j < 16; ++j) q4[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  k::dequantize_ggml_row(k::kGgmlQ4_0, q4.data(), y.data(), 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], j - 8);
    EXPECT_EQ(y[j + 16], 7 - j);
  }
  // Q6_K: ql all 0x21 (low nibble 1, high 2), qh 0 -> codes 1 / 2, minus 32; scales all 2.
  std::vector<uint8_t> q6(210, 0);
  std::fill(q6.begin(), q6.begin() + 128, 0x21);
  std::fill(q6.begin() + 192, q6.begin() + 208, 2);
  std::memcpy(&q6[208], &half, 2);
  k::dequantize_ggml_row(k::kGgmlQ6_K, q6.data(), y.data(), 256);
  for (int n = 0; n < 2; ++n)
    for (int l = 0; l < 32; ++l) {
      EXPECT_EQ(y[128 * n + l], 0.5f * 2 * (1 - 32));
      EXPECT_EQ(y[128 * n + 32 + l], 0.5f * 2 * (1 - 32));
      EXPECT_EQ(y[128 * n + 64 + l], 0.5f * 2 * (2 - 32));
      EXPECT_EQ(y[128 * n + 96 + l], 0.5f * 2 * (2 - 32));
    }
  // IQ4_NL, d = 0.5: byte j holds codes j (low) and 15 - j (high), values from the IQ4 grid.
  const int8_t grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  std::vector<uint8_t> nl(18);
  std::memcpy(nl.data(), &half, 2);
  for (int j = 0; j < 16; ++j) nl[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  k::dequantize_ggml_row(k::kGgmlIQ4_NL, nl.data(), y.data(), 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * grid[j]);
    EXPECT_EQ(y[j + 16], 0.5f * grid[15 - j]);
  }
  // IQ4_XS, d = 1: sub-block s has the 6-bit scale 33 + s (low nibbles in scales_l, top bits in scales_h:
  // 33..40 all have top bits 10), so its weights are (1 + s) * grid value; every code byte 0x3C (12, 3).
  std::vector<uint8_t> xs(136);
  std::memcpy(xs.data(), &one, 2);
  const uint16_t scales_h = 0xAAAA;  // field s = 2 for every sub-block
  std::memcpy(&xs[2], &scales_h, 2);
  for (int s = 0; s < 8; s += 2) xs[4 + s / 2] = static_cast<uint8_t>(((33 + s) & 0xF) | (((34 + s) & 0xF) << 4));
  std::fill(xs.begin() + 8, xs.end(), 0x3C);
  k::dequantize_ggml_row(k::kGgmlIQ4_XS, xs.data(), y.data(), 256);
  for (int s = 0; s < 8; ++s)
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(y[32 * s + j], (1.0f + s) * grid[12]);
      EXPECT_EQ(y[32 * s + 16 + j], (1.0f + s) * grid[3]);
    }
}

// Stacked experts in block formats (ggml_gather_matmul) against gather_mm over the scalar port's
// dequantization, in the MoE block's two shapes (the token broadcast over its k experts, then each
// expert's own row), with more than 8 rows routed to one expert, on every ISA.
TEST_F(GgmlKernels, GatherMatmulEqualsGatherMmOfDequantized) {
  uint32_t seed = 500;
  const int E = 4, N = 37, K = 512, topk = 2;
  for (k::Isa isa : machine_isas()) {
    k::cap_isa(isa);
    for (uint32_t type : kAllTypes)
      for (int T : {1, 13}) {
        SCOPED_TRACE("isa " + std::to_string(static_cast<int>(isa)) + " type " + std::to_string(type) +
                     " T=" + std::to_string(T));
        auto w2 = random_blocks(type, E * N, K, seed++);
        auto w = mx::reshape(w2, {E, N, w2.shape(1)});
        auto wd = mx::reshape(scalar_dequantize(w2, type, K), {E, N, K});
        auto idx = mx::random::randint(0, E, {2, T, topk}, mx::uint32, mx::random::key(seed++));
        auto x = mx::random::normal({2, T, 1, 1, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed++));
        auto ref = mx::gather_mm(x, mx::swapaxes(wd, -1, -2), std::nullopt, idx);
        auto got = k::ggml_gather_matmul(x, w, idx, type);
        mx::eval(ref, got);
        ASSERT_EQ(got.shape(), (mx::Shape{2, T, topk, 1, N}));
        EXPECT_LE(max_rel(got, ref), 1e-5f);
        // The down projection's shape: each (token, expert) row multiplied by its own expert.
        auto h = mx::random::normal({2, T, topk, 1, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed++));
        auto ref_h = mx::gather_mm(h, mx::swapaxes(wd, -1, -2), std::nullopt, idx);
        auto got_h = k::ggml_gather_matmul(h, w, idx, type);
        mx::eval(ref_h, got_h);
        EXPECT_LE(max_rel(got_h, ref_h), 1e-5f);
        // A pair's result does not depend on which other pairs share its expert in the call.
        auto solo = k::ggml_gather_matmul(mx::slice(h, {0, 0, 0, 0, 0}, {1, 1, topk, 1, K}), w,
                                          mx::slice(idx, {0, 0, 0}, {1, 1, topk}), type);
        EXPECT_EQ(
            mx::max(mx::abs(mx::subtract(solo, mx::slice(got_h, {0, 0, 0, 0, 0}, {1, 1, topk, 1, N})))).item<float>(),
            0.0f);
      }
  }
  k::cap_isa(k::Isa::avx512);
}

TEST_F(GgmlKernels, GatherMatmulDtypesGradientAndChecks) {
  const int E = 3, N = 20, K = 256;
  auto w2 = random_blocks(k::kGgmlQ6_K, E * N, K, 77);
  auto w = mx::reshape(w2, {E, N, w2.shape(1)});
  auto wd = mx::reshape(k::ggml_dequantize(w2, k::kGgmlQ6_K, K), {E, N, K});
  auto idx = mx::array({2, 0, 1, 2}, {2, 2}, mx::int32);
  auto x = mx::random::normal({2, 1, 1, K}, mx::float32, 0.0f, 1.0f, mx::random::key(78));
  auto gh = k::ggml_gather_matmul(mx::astype(x, mx::bfloat16), w, idx, k::kGgmlQ6_K);
  EXPECT_EQ(gh.dtype(), mx::bfloat16);
  EXPECT_EQ(gh.shape(), (mx::Shape{2, 2, 1, N}));
  // dx of sum(gather(x, W^T)): for each token, the column sums of its experts' weights.
  auto grad =
      mx::grad([&](const mx::array& xx) { return mx::sum(k::ggml_gather_matmul(xx, w, idx, k::kGgmlQ6_K)); })(x);
  auto expect = mx::grad(
      [&](const mx::array& xx) { return mx::sum(mx::gather_mm(xx, mx::swapaxes(wd, -1, -2), std::nullopt, idx)); })(x);
  EXPECT_LE(max_rel(grad, expect), 1e-5f);
  EXPECT_THROW(k::ggml_gather_matmul(mx::ones({1, 1, 512}), w, idx, k::kGgmlQ6_K), std::invalid_argument);
  EXPECT_THROW(k::ggml_gather_matmul(x, w2, idx, k::kGgmlQ6_K), std::invalid_argument);
  EXPECT_THROW(k::ggml_gather_matmul(x, w, mx::astype(idx, mx::float32), k::kGgmlQ6_K), std::invalid_argument);
}

namespace {

// ggml_q8.h's arithmetic written out one value at a time: quantize_row_q8_1's x86 rounding (d and s as
// halves), the exact integer dot product, then the one float sequence (four partials by block mod 4).
float half_round(float v) {
  mx::array h = mx::astype(mx::astype(mx::array(v), mx::float16), mx::float32);
  mx::eval(h);
  return h.item<float>();
}

std::vector<float> q8_reference(uint32_t type, const std::vector<float>& x, int M, int K, const uint8_t* w, int N) {
  const int B = K / 32, bytes = k::ggml_block(type).bytes;
  std::vector<float> out(static_cast<size_t>(M) * N);
  for (int m = 0; m < M; ++m) {
    std::vector<int> q(K);
    std::vector<float> d(B), s(B);
    for (int b = 0; b < B; ++b) {
      const float* xb = &x[static_cast<size_t>(m) * K + 32 * b];
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
      const float id = amax > 0 ? 127.f / amax : 0.f;
      int sum = 0;
      for (int i = 0; i < 32; ++i) sum += q[32 * b + i] = static_cast<int>(std::nearbyint(xb[i] * id));
      d[b] = half_round(amax / 127.f);
      s[b] = half_round(amax / 127.f * static_cast<float>(sum));
    }
    for (int n = 0; n < N; ++n) {
      float part[4] = {0, 0, 0, 0};
      for (int b = 0; b < B; ++b) {
        const uint8_t* blk = w + (static_cast<size_t>(n) * B + b) * bytes;
        int isum = 0;
        for (int i = 0; i < 32; ++i) {
          int wi;
          if (type == k::kGgmlQ8_0) {
            wi = static_cast<int8_t>(blk[2 + i]);
          } else if (type == k::kGgmlQ5_0 || type == k::kGgmlQ5_1) {
            const int qh = type == k::kGgmlQ5_0 ? 2 : 4;
            uint32_t h;
            std::memcpy(&h, blk + qh, 4);
            const uint8_t byte = blk[qh + 4 + i % 16];
            wi = ((i < 16 ? byte & 15 : byte >> 4) | ((h >> i) & 1) << 4) - (type == k::kGgmlQ5_0 ? 16 : 0);
          } else if (type == k::kGgmlIQ4_NL) {
            const uint8_t byte = blk[2 + i % 16];
            wi = k::kIq4NlValues[i < 16 ? byte & 15 : byte >> 4];
          } else {
            const uint8_t byte = blk[(type == k::kGgmlQ4_0 ? 2 : 4) + i % 16];
            wi = (i < 16 ? byte & 15 : byte >> 4) - (type == k::kGgmlQ4_0 ? 8 : 0);
          }
          isum += wi * q[32 * b + i];
        }
        float p = static_cast<float>(isum) * (k::half_at(blk) * d[b]);
        if (type == k::kGgmlQ4_1 || type == k::kGgmlQ5_1) p = std::fma(k::half_at(blk + 2), s[b], p);
        part[b % 4] += p;
      }
      out[static_cast<size_t>(m) * N + n] = (part[0] + part[1]) + (part[2] + part[3]);
    }
  }
  return out;
}

}  // namespace

// The int8-activation kernels (one-row, 8-row and 16-row, with and without a block tail) equal the
// written-out arithmetic value for value; llama.cpp itself is the reference in
// tests/parity/test_int8_activations.py. Where the machine cannot run them, the mode is refused.
TEST_F(GgmlKernels, Int8ActivationsFollowTheirArithmeticExactly) {
  uint32_t seed = 77;
  for (uint32_t type : {k::kGgmlQ4_0, k::kGgmlQ4_1, k::kGgmlQ5_0, k::kGgmlQ5_1, k::kGgmlQ8_0, k::kGgmlIQ4_NL}) {
    for (int K : {32, 96, 544, 576, 800}) {
      const int N = 19;
      auto w = random_blocks(type, N, K, seed++);
      for (int M : {1, 7, 8, 12, 16, 19, 33}) {
        SCOPED_TRACE("type " + std::to_string(type) + " K=" + std::to_string(K) + " M=" + std::to_string(M));
        auto x = mx::random::normal({M, K}, mx::float32, 0.0f, 2.0f, mx::random::key(seed++));
        if (!k::ggml_q8_supported(type)) {
          EXPECT_THROW(k::ggml_matmul(x, w, type, true), std::invalid_argument);
          continue;
        }
        auto got = k::ggml_matmul(x, w, type, true);
        mx::eval(got, w);
        std::vector<float> xv(x.data<float>(), x.data<float>() + x.size());
        const auto ref = q8_reference(type, xv, M, K, w.data<uint8_t>(), N);
        ASSERT_EQ(got.shape(), (mx::Shape{M, N}));
        for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(got.data<float>()[i], ref[i]) << "at " << i;
      }
    }
  }
}

TEST_F(GgmlKernels, Int8ActivationsPropagateNonFiniteAndRefuseOtherTypes) {
  auto w = random_blocks(k::kGgmlQ3_K, 4, 256, 5);
  EXPECT_THROW(k::ggml_matmul(mx::ones({1, 256}), w, k::kGgmlQ3_K, true), std::invalid_argument);
  if (!k::ggml_q8_supported(k::kGgmlQ4_1)) return;
  auto w41 = random_blocks(k::kGgmlQ4_1, 3, 64, 6);
  std::vector<float> x(2 * 64, 1.0f);
  x[40] = std::nanf("");
  x[64 + 3] = INFINITY;
  auto y = k::ggml_matmul(mx::array(x.data(), {2, 64}), w41, k::kGgmlQ4_1, true);
  EXPECT_TRUE(mx::all(mx::isnan(y)).item<bool>());
}

// A batch row equals that row run alone bit for bit, whichever row kernel width (8, 4, 1) takes it: the
// narrow kernels read the block scales gathered ahead (gather_halves), the 8-row one block by block. K of
// 17 and 259 blocks: a partial last gather, and a row longer than one gathered segment (256 blocks).
TEST_F(GgmlKernels, BatchRowsEqualSoloRowsBitForBit) {
  if (k::machine_isa() != k::Isa::avx512) GTEST_SKIP() << "the fused row kernels are AVX-512";
  uint32_t seed = 500;
  for (uint32_t type :
       {k::kGgmlQ4_0, k::kGgmlQ4_1, k::kGgmlQ5_0, k::kGgmlQ5_1, k::kGgmlQ8_0, k::kGgmlIQ4_NL, k::kGgmlIQ4_XS})
    for (int K : {17 * 32, 259 * 32}) {
      if (K % k::ggml_block(type).elements) K *= 8;  // IQ4_XS: 256-value blocks
      SCOPED_TRACE("type " + std::to_string(type) + " K=" + std::to_string(K));
      auto w = random_blocks(type, 21, K, seed++);
      auto x = mx::random::normal({13, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed++));
      auto all = k::ggml_matmul(x, w, type);
      EXPECT_LE(max_rel(all, mx::matmul(x, mx::transpose(scalar_dequantize(w, type, K)))), 1e-5f);
      for (int m : {0, 5, 8, 12}) {
        auto solo = k::ggml_matmul(mx::slice(x, {m, 0}, {m + 1, K}), w, type);
        EXPECT_TRUE(mx::array_equal(mx::slice(all, {m, 0}, {m + 1, 21}), solo).item<bool>()) << "row " << m;
      }
    }
}

// Several weights against one input (q, k and v; gate and up) as one node equal ggml_matmul one weight at
// a time bit for bit: float32 and int8 activations, decode and prefill-chunk row counts, uneven N; the
// gradient of x sums the weights' products; other cases go weight by weight.
TEST_F(GgmlKernels, MatmulMultiEqualsOneWeightAtATime) {
  uint32_t seed = 300;
  for (uint32_t type : {k::kGgmlQ4_0, k::kGgmlQ4_1, k::kGgmlQ5_0, k::kGgmlQ8_0, k::kGgmlQ6_K}) {
    const int K = 256;
    std::vector<mx::array> ws{random_blocks(type, 48, K, seed++), random_blocks(type, 16, K, seed++),
                              random_blocks(type, 7, K, seed++)};
    for (bool int8 : {false, true}) {
      if (int8 && !k::ggml_q8_supported(type)) continue;
      for (int M : {1, 3, 9, 70}) {
        SCOPED_TRACE("type " + std::to_string(type) + " int8 " + std::to_string(int8) + " M=" + std::to_string(M));
        auto x = mx::random::normal({1, M, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed++));
        auto got = k::ggml_matmul_multi(x, ws, type, int8);
        ASSERT_EQ(got.size(), ws.size());
        for (size_t i = 0; i < ws.size(); ++i) {
          auto one = k::ggml_matmul(x, ws[i], type, int8);
          ASSERT_EQ(got[i].shape(), one.shape());
          EXPECT_TRUE(mx::array_equal(got[i], one).item<bool>()) << "weight " << i;
        }
      }
    }
  }
  auto ws = std::vector<mx::array>{random_blocks(k::kGgmlQ4_1, 8, 64, 1), random_blocks(k::kGgmlQ4_1, 4, 64, 2)};
  auto x = mx::random::normal({2, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(3));
  auto f = [&](const mx::array& xx) {
    auto y = k::ggml_matmul_multi(xx, ws, k::kGgmlQ4_1);
    return mx::add(mx::sum(y[0]), mx::sum(mx::multiply(y[1], mx::array(2.0f))));
  };
  auto expect = mx::add(mx::sum(k::ggml_dequantize(ws[0], k::kGgmlQ4_1, 64), 0),
                        mx::multiply(mx::sum(k::ggml_dequantize(ws[1], k::kGgmlQ4_1, 64), 0), mx::array(2.0f)));
  EXPECT_LE(max_rel(mx::grad(f)(x), mx::broadcast_to(expect, x.shape())), 1e-5f);
  EXPECT_THROW(k::ggml_matmul_multi(mx::ones({1, 96}), ws, k::kGgmlQ4_1), std::invalid_argument);
}

// Weights repacked for the int8 kernels (16 rows interleaved per block) give the products of the stored
// blocks bit for bit at every row count (one-row, lane and prefill-chunk paths on the stored side), alone
// and several at once, with non-finite rows; pack and unpack are inverse; where the repack cannot apply
// (N not a multiple of 16, another type) there is none; a repack that does not match its weight is refused.
TEST_F(GgmlKernels, Int8RepackedWeightsEqualStoredBitForBit) {
  uint32_t seed = 500;
  for (uint32_t type : {k::kGgmlQ4_0, k::kGgmlQ4_1, k::kGgmlQ5_0, k::kGgmlQ5_1, k::kGgmlQ8_0, k::kGgmlIQ4_NL,
                        k::kGgmlQ4_K, k::kGgmlQ5_K, k::kGgmlQ6_K, k::kGgmlIQ4_XS}) {
    const bool super = k::ggml_q8k_type(type);  // 256-value blocks
    if (!k::ggml_q8_supported(type)) {
      EXPECT_FALSE(k::ggml_q8_pack(random_blocks(type, 16, 256, seed++), type, 256).has_value());
      continue;
    }
    for (int K : super ? std::vector<int>{256, 768} : std::vector<int>{32, 96, 576}) {
      std::vector<mx::array> ws{random_blocks(type, 48, K, seed++), random_blocks(type, 16, K, seed++)};
      std::vector<mx::array> packed;
      for (auto& w : ws) {
        auto p = k::ggml_q8_pack(w, type, K);
        ASSERT_TRUE(p.has_value());
        ASSERT_EQ(p->shape(), w.shape());
        EXPECT_FALSE(mx::array_equal(*p, w).item<bool>());
        std::vector<uint8_t> back(w.nbytes());
        k::ggml_q8_unpack(type, p->data<uint8_t>(), w.shape(0), K, back.data());
        mx::eval(w);
        EXPECT_TRUE(std::equal(back.begin(), back.end(), w.data<uint8_t>()));
        packed.push_back(*p);
      }
      for (int M : {1, 2, 7, 8, 9, 16, 70}) {
        SCOPED_TRACE("type " + std::to_string(type) + " K=" + std::to_string(K) + " M=" + std::to_string(M));
        auto x = mx::random::normal({1, M, K}, mx::float32, 0.0f, 2.0f, mx::random::key(seed++));
        if (M == 9) x = mx::where(mx::equal(mx::arange(K), mx::array(5)), mx::array(NAN), x);  // every row NaN
        for (size_t i = 0; i < ws.size(); ++i) {
          auto stored = k::ggml_matmul(x, ws[i], type, true),
               repacked = k::ggml_matmul(x, ws[i], type, true, packed[i]);
          EXPECT_TRUE(mx::array_equal(stored, repacked, /*equal_nan=*/true).item<bool>()) << "weight " << i;
        }
        auto multi = k::ggml_matmul_multi(x, ws, type, true, packed);
        for (size_t i = 0; i < ws.size(); ++i)
          EXPECT_TRUE(mx::array_equal(multi[i], k::ggml_matmul(x, ws[i], type, true), true).item<bool>());
      }
    }
  }
  EXPECT_FALSE(k::ggml_q8_pack(random_blocks(k::kGgmlQ4_1, 24, 64, 1), k::kGgmlQ4_1, 64).has_value());
  EXPECT_FALSE(k::ggml_q8_pack(random_blocks(k::kGgmlQ3_K, 16, 256, 2), k::kGgmlQ3_K, 256).has_value());
  if (!k::ggml_q8_supported(k::kGgmlQ4_1)) return;
  auto w = random_blocks(k::kGgmlQ4_1, 32, 64, 3), other = random_blocks(k::kGgmlQ4_1, 16, 64, 4);
  auto p = *k::ggml_q8_pack(w, k::kGgmlQ4_1, 64);
  EXPECT_THROW(k::ggml_matmul(mx::ones({1, 64}), w, k::kGgmlQ4_1, false, p), std::invalid_argument);
  EXPECT_THROW(k::ggml_matmul(mx::ones({1, 64}), other, k::kGgmlQ4_1, true, p), std::invalid_argument);
  // The gradient reads the stored blocks.
  auto f = [&](const mx::array& xx) { return mx::sum(k::ggml_matmul(xx, w, k::kGgmlQ4_1, true, p)); };
  auto expect = mx::sum(k::ggml_dequantize(w, k::kGgmlQ4_1, 64), 0);
  EXPECT_LE(max_rel(mx::grad(f)(mx::ones({2, 64})), mx::broadcast_to(expect, {2, 64})), 1e-5f);
}
