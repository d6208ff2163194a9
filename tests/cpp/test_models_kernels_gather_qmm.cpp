// The CPU kernel for MLX-quantized stacked experts (kernels::gather_quantized_matmul) against MLX's own
// mx::gather_qmm, in the same test: every format the row kernels take, both shapes the MoE block uses.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <mlx/mlx.h>

#include "kernels/kernels.h"
#include "test_kernels_util.h"
#include "test_models_util.h"

namespace mx = mlx::core;

namespace {

using mlxgp::testing::rel_err;

struct Format {
  int group, bits;
  std::string mode;
  mx::Dtype scales = mx::float32;
};

struct Experts {
  mx::array w, scales;
  std::optional<mx::array> biases;
};

Experts quantize(const Format& f, int E, int N, int K, uint64_t seed) {
  auto w = mx::random::normal({E, N, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed));
  auto q = mx::quantize(w, f.group, f.bits, f.mode);
  Experts out{q[0], mx::astype(q[1], f.mode == "affine" ? f.scales : q[1].dtype()), std::nullopt};
  if (q.size() > 2) out.biases = mx::astype(q[2], f.scales);
  return out;
}

// x [T, X, 1, K] (X = 1: the token broadcast over its k experts; X = k: each expert's own input) against
// indices [T, k] drawn from E experts.
void check(const Format& f, int T, int X, int k, uint64_t seed) {
  SCOPED_TRACE(f.mode + " bits=" + std::to_string(f.bits) + " group=" + std::to_string(f.group) +
               " T=" + std::to_string(T) + " X=" + std::to_string(X));
  const int E = 5, N = 67, K = 192;
  auto ex = quantize(f, E, N, K, seed);
  auto x = mx::random::normal({T, X, 1, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed + 1));
  auto idx = mx::random::randint(0, E, {T, k}, mx::uint32, mx::random::key(seed + 2));
  ASSERT_TRUE(
      mlxgp::kernels::gather_quantized_matmul_supported(x, ex.w, ex.scales, ex.biases, idx, f.group, f.bits, f.mode));
  auto got = mlxgp::kernels::gather_quantized_matmul(x, ex.w, ex.scales, ex.biases, idx, f.group, f.bits, f.mode);
  // MLX's affine kernel wants its scales in x's dtype.
  std::optional<mx::array> rb;
  if (ex.biases) rb = mx::astype(*ex.biases, mx::float32);
  auto rs = f.mode == "affine" ? mx::astype(ex.scales, mx::float32) : ex.scales;
  auto want = mx::gather_qmm(x, ex.w, rs, rb, std::nullopt, idx, true, f.group, f.bits, f.mode);
  mx::eval(got, want);
  ASSERT_EQ(got.shape(), want.shape());
  EXPECT_LE(rel_err(got, want), 1e-5f);
}

const std::vector<Format> kFormats = {{32, 4, "affine"},
                                      {64, 4, "affine", mx::float16},
                                      {32, 5, "affine", mx::bfloat16},
                                      {64, 8, "affine"},
                                      {32, 4, "mxfp4"},
                                      {32, 8, "mxfp8"},
                                      {16, 4, "nvfp4"}};

}  // namespace

class GatherQmm : public mlxgp::testing::CpuDefaultDevice {};

TEST_F(GatherQmm, MatchesMlxForEveryFormatIsaAndShape) {
  REQUIRE_KERNELS();
  uint64_t seed = 1;
  for (const char* isa : {"portable", "avx2", "avx512"}) {
    SCOPED_TRACE(isa);
    ASSERT_TRUE(mlxgp::kernels::set_cpu_isa_cap(isa));
    for (const auto& f : kFormats) {
      check(f, 1, 1, 2, seed += 3);  // decode: one token, its experts
      check(f, 9, 1, 2, seed += 3);  // prefill: some experts take several tokens, some none
      check(f, 9, 2, 2, seed += 3);  // the down projection: each pair its own input
    }
  }
  mlxgp::kernels::set_cpu_isa_cap("avx512");
}

// Under a transform (LoRA training through frozen experts), bfloat16 activations, 2-bit affine experts and
// shapes outside [..., 1, K]: MLX's op, with its results.
TEST_F(GatherQmm, OtherCasesAreMlxs) {
  auto ex = quantize({32, 4, "mxfp4"}, 3, 40, 64, 7);
  auto x = mx::random::normal({2, 1, 1, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(8));
  auto idx = mx::array({0, 2, 1, 1}, {2, 2}, mx::uint32);
  auto loss = [&](auto f) { return mx::grad([f](const mx::array& a) { return mx::sum(mx::square(f(a))); })(x); };
  auto got = loss([&](const mx::array& a) {
    return mlxgp::kernels::gather_quantized_matmul(a, ex.w, ex.scales, std::nullopt, idx, 32, 4, "mxfp4");
  });
  auto want = loss([&](const mx::array& a) {
    return mx::gather_qmm(a, ex.w, ex.scales, std::nullopt, std::nullopt, idx, true, 32, 4, "mxfp4");
  });
  EXPECT_LE(rel_err(got, want), 1e-6f);
  auto xh = mx::astype(x, mx::bfloat16);
  EXPECT_FALSE(
      mlxgp::kernels::gather_quantized_matmul_supported(xh, ex.w, ex.scales, std::nullopt, idx, 32, 4, "mxfp4"));
  auto x2 = mx::random::normal({2, 1, 3, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(9));  // 3 rows per pair
  EXPECT_FALSE(
      mlxgp::kernels::gather_quantized_matmul_supported(x2, ex.w, ex.scales, std::nullopt, idx, 32, 4, "mxfp4"));
  auto a2 = quantize({32, 2, "affine"}, 3, 40, 64, 10);
  EXPECT_FALSE(mlxgp::kernels::gather_quantized_matmul_supported(x, a2.w, a2.scales, a2.biases, idx, 32, 2, "affine"));
  auto y = mlxgp::kernels::gather_quantized_matmul(x, a2.w, a2.scales, a2.biases, idx, 32, 2, "affine");
  EXPECT_LE(rel_err(y, mx::gather_qmm(x, a2.w, a2.scales, a2.biases, std::nullopt, idx, true, 32, 2, "affine")), 0.0f);
}
