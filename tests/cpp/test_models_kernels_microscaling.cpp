// The CPU quantized matmul in MLX's microscaling modes (mxfp4: e2m1 codes, e8m0 scales per 32; mxfp8: e4m3 codes,
// e8m0 scales per 32; nvfp4: e2m1 codes, e4m3 scales per 16; no biases) against MLX's own mx::quantized_matmul /
// mx::dequantize, in the same test.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <mlx/mlx.h>

#include "kernels/fp_formats.h"
#include "kernels/kernels.h"
#include "test_kernels_util.h"
#include "test_models_util.h"

namespace mx = mlx::core;

namespace {

using mlxgp::testing::rel_err;

int group_of(const std::string& mode) { return mode == "nvfp4" ? 16 : 32; }
int bits_of(const std::string& mode) { return mode == "mxfp8" ? 8 : 4; }
const std::string kModes[] = {"mxfp4", "mxfp8", "nvfp4"};

// x [M, K] @ W^T, W [N, K] quantized in `mode`: ours against MLX's kernel.
void check(const std::string& mode, int M, int N, int K, uint64_t seed) {
  SCOPED_TRACE(mode + " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
  const int group = group_of(mode), bits = bits_of(mode);
  auto w = mx::random::normal({N, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed));
  auto x = mx::random::normal({M, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed + 1));
  auto q = mx::quantize(w, group, bits, mode);
  ASSERT_EQ(q.size(), 2u);
  ASSERT_TRUE(mlxgp::kernels::quantized_matmul_supported(x, q[0], q[1], std::nullopt, group, bits, mode));
  auto ref = mx::quantized_matmul(x, q[0], q[1], std::nullopt, true, group, bits, mode);
  auto got = mlxgp::kernels::quantized_matmul(x, q[0], q[1], std::nullopt, group, bits, mode);
  mx::eval(ref, got);
  ASSERT_EQ(got.shape(), ref.shape());
  EXPECT_LE(rel_err(got, ref), 1e-5f);
}

}  // namespace

class MicroscalingKernels : public mlxgp::testing::CpuDefaultDevice {};

// fp_formats.h decodes each byte as MLX does: every e8m0 and e4m3 scale byte, each with all 16 e2m1 codes
// (mx::dequantize of one group per scale byte), NaN where MLX gives NaN.
TEST_F(MicroscalingKernels, FormatsDecodeEveryByteAsMlx) {
  for (const std::string mode : {"mxfp4", "nvfp4"}) {
    SCOPED_TRACE(mode);
    const int group = group_of(mode);
    std::vector<uint32_t> words(256 * group / 8);
    for (int s = 0; s < 256; ++s)
      for (int k = 0; k < group; ++k) words[(s * group + k) / 8] |= static_cast<uint32_t>(k % 16) << (4 * (k % 8));
    std::vector<uint8_t> scale_bytes(256);
    for (int s = 0; s < 256; ++s) scale_bytes[s] = static_cast<uint8_t>(s);
    mx::array w(words.data(), {256, group / 8}, mx::uint32);
    mx::array sc(scale_bytes.data(), {256, 1}, mx::uint8);
    auto d = mx::dequantize(w, sc, std::nullopt, group, 4, mode, std::nullopt, mx::float32);
    mx::eval(d);
    const float* v = d.data<float>();
    for (int s = 0; s < 256; ++s) {
      const float scale = mode == "mxfp4" ? mlxgp::kernels::e8m0_scale(static_cast<uint8_t>(s))
                                          : mlxgp::kernels::e4m3_value(static_cast<uint8_t>(s));
      for (int c = 0; c < 16; ++c) {
        const float want = v[s * group + c], got = mlxgp::kernels::kE2m1[c] * scale;
        if (std::isnan(want)) EXPECT_TRUE(std::isnan(got)) << "scale byte " << s << " code " << c;
        else
          EXPECT_EQ(std::memcmp(&want, &got, sizeof want), 0)
              << "scale byte " << s << " code " << c << ": " << got << " != " << want;
      }
    }
  }
}

TEST_F(MicroscalingKernels, MatchMlxOnEveryIsaAndRowCount) {
  REQUIRE_KERNELS();
  uint64_t seed = 1;
  for (const char* isa : {"portable", "avx2", "avx512"}) {
    SCOPED_TRACE(isa);
    ASSERT_TRUE(mlxgp::kernels::set_cpu_isa_cap(isa));
    for (const auto& mode : kModes)
      for (int M : {1, 2, 3, 5, 8, 13}) check(mode, M, 67, 192, seed += 2);
  }
  mlxgp::kernels::set_cpu_isa_cap("avx512");
  // Many rows over the thread pool, and prefill-sized x (dequantized once, then BLAS on AVX-512).
  for (const auto& mode : kModes) {
    check(mode, 1, 4099, 576, seed += 2);
    check(mode, 13, 1027, 576, seed += 2);
    check(mode, mlxgp::kernels::kQmmGemmRows + 7, 131, 320, seed += 2);
  }
}

// Training through a frozen microscaling weight (LoRA): the gradient with respect to x is MLX's.
TEST_F(MicroscalingKernels, GradientWithRespectToXIsMlxs) {
  REQUIRE_KERNELS();
  for (const auto& mode : kModes) {
    const int group = group_of(mode), bits = bits_of(mode);
    auto q = mx::quantize(mx::random::normal({40, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(3)), group, bits, mode);
    auto x = mx::random::normal({5, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(4));
    auto loss = [&](auto f) { return mx::grad([f](const mx::array& a) { return mx::sum(mx::square(f(a))); })(x); };
    auto got = loss([&](const mx::array& a) {
      return mlxgp::kernels::quantized_matmul(a, q[0], q[1], std::nullopt, group, bits, mode);
    });
    auto want = loss(
        [&](const mx::array& a) { return mx::quantized_matmul(a, q[0], q[1], std::nullopt, true, group, bits, mode); });
    EXPECT_LE(rel_err(got, want), 1e-5f) << mode;
  }
}

// Half-precision activations and affine arguments without biases stay with MLX's kernel.
TEST_F(MicroscalingKernels, OtherCasesGoToMlx) {
  auto w = mx::random::normal({32, 128}, mx::float32, 0.0f, 1.0f, mx::random::key(5));
  auto x = mx::random::normal({1, 128}, mx::float32, 0.0f, 1.0f, mx::random::key(6));
  auto q4 = mx::quantize(w, 32, 4, "mxfp4");
  auto xh = mx::astype(x, mx::bfloat16);
  EXPECT_FALSE(mlxgp::kernels::quantized_matmul_supported(xh, q4[0], q4[1], std::nullopt, 32, 4, "mxfp4"));
  EXPECT_EQ(mlxgp::kernels::quantized_matmul(xh, q4[0], q4[1], std::nullopt, 32, 4, "mxfp4").dtype(), mx::bfloat16);
  auto qa = mx::quantize(w, 32, 4);
  EXPECT_FALSE(mlxgp::kernels::quantized_matmul_supported(x, qa[0], qa[1], std::nullopt, 32, 4, "affine"));
}

// mxfp8's every e4m3 code (NaN codes aside) through the SIMD decode of the row kernel and of the prefill's
// dequantization: one-hot rows of x read each weight back, bit for bit mx::dequantize's.
TEST_F(MicroscalingKernels, Mxfp8DecodesEveryCodeAsMlx) {
  REQUIRE_KERNELS();
  std::vector<uint8_t> codes(256);
  for (int c = 0; c < 256; ++c) codes[c] = (c & 0x7F) == 0x7F ? 0 : static_cast<uint8_t>(c);
  mx::array w = mx::view(mx::array(codes.data(), {1, 256}, mx::uint8), mx::uint32);  // [1, 64] words
  std::vector<uint8_t> sb(8, 127);                                                   // scale 1
  mx::array sc(sb.data(), {1, 8}, mx::uint8);
  auto want = mx::dequantize(w, sc, std::nullopt, 32, 8, "mxfp8", std::nullopt, mx::float32);  // [1, 256]
  for (const char* isa : {"portable", "avx2", "avx512"}) {
    SCOPED_TRACE(isa);
    ASSERT_TRUE(mlxgp::kernels::set_cpu_isa_cap(isa));
    for (int M : {8, 256}) {  // the row kernel, and from kQmmGemmRows rows the dequantize-then-multiply path
      auto x = mx::slice(mx::eye(256, mx::float32), {0, 0}, {M, 256});
      auto got = mlxgp::kernels::quantized_matmul(x, w, sc, std::nullopt, 32, 8, "mxfp8");  // [M, 1]
      auto expect = mx::reshape(mx::slice(want, {0, 0}, {1, M}), {M, 1});
      EXPECT_TRUE(mx::array_equal(got, expect).item<bool>()) << "M=" << M;
    }
  }
  mlxgp::kernels::set_cpu_isa_cap("avx512");
}
