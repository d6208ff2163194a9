// The custom CPU quantized matmul against mx::quantized_matmul (the reference), run in the same test.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <mlx/mlx.h>

#include "kernels/kernels.h"
#include "kernels/logits_scan.h"
#include "kernels/prefill_attention.h"
#include "test_kernels_util.h"
#include "test_models_util.h"

namespace mx = mlx::core;

namespace {

using mlxgp::testing::rel_err;

struct Case {
  int bits, group, M, N, K;
  mx::Dtype scale_dtype;
};

std::string describe(const Case& c) {
  std::ostringstream o;
  o << "bits=" << c.bits << " group=" << c.group << " M=" << c.M << " N=" << c.N << " K=" << c.K
    << " scales=" << c.scale_dtype;
  return o.str();
}

void check(const Case& c, uint64_t seed) {
  SCOPED_TRACE(describe(c));
  auto key = mx::random::key(seed);
  auto keys = mx::random::split(key, 2);
  auto w = mx::random::normal({c.N, c.K}, mx::float32, 0.0f, 1.0f, mx::take(keys, 0, 0));
  auto x = mx::random::normal({c.M, c.K}, mx::float32, 0.0f, 1.0f, mx::take(keys, 1, 0));
  auto q = mx::quantize(w, c.group, c.bits);
  auto scales = mx::astype(q[1], c.scale_dtype), biases = mx::astype(q[2], c.scale_dtype);
  ASSERT_TRUE(mlxgp::kernels::quantized_matmul_supported(x, q[0], scales, biases, c.group, c.bits));
  auto ref = mx::quantized_matmul(x, q[0], scales, biases, true, c.group, c.bits);
  auto got = mlxgp::kernels::quantized_matmul(x, q[0], scales, biases, c.group, c.bits);
  mx::eval(ref, got);
  ASSERT_EQ(got.shape(), ref.shape());
  ASSERT_EQ(got.dtype(), mx::float32);
  EXPECT_LE(rel_err(got, mx::astype(ref, mx::float32)), 1e-4f);
}

}  // namespace

// These are the CPU kernels: each test runs with the CPU as MLX's default device.
class Kernels : public mlxgp::testing::CpuDefaultDevice {};

TEST_F(Kernels, QuantizedMatmulMatchesMlxForEachFormat) {
  REQUIRE_KERNELS();
  uint64_t seed = 1;
  // Every SIMD path this CPU can run (a cap above the machine's ISA just keeps the best one).
  for (const char* isa : {"portable", "avx2", "avx512"}) {
    SCOPED_TRACE(isa);
    ASSERT_TRUE(mlxgp::kernels::set_cpu_isa_cap(isa));
    for (int bits : {4, 5, 8})
      for (int group : {32, 64})
        for (auto dt : {mx::float32, mx::float16, mx::bfloat16})
          for (int M : {1, 2, 3, 5, 8, 13}) check({bits, group, M, 67, 192, dt}, seed++);
  }
  EXPECT_FALSE(mlxgp::kernels::set_cpu_isa_cap("sse9"));
  mlxgp::kernels::set_cpu_isa_cap("avx512");
}

TEST_F(Kernels, QuantizedMatmulLargeShapesUseEveryThread) {
  REQUIRE_KERNELS();
  // Big enough to be split across the pool; odd N so the last chunk is partial.
  check({4, 32, 1, 4099, 576, mx::float32}, 7);
  check({8, 64, 3, 2051, 1536, mx::float16}, 8);
  // Batched rows over many weight tiles: blocks of 8 (AVX-512) and 4, remainders of 1 and 3.
  check({4, 32, 13, 4099, 576, mx::float32}, 9);
  check({8, 64, 19, 1027, 576, mx::bfloat16}, 10);
  check({5, 32, 1, 2051, 576, mx::float32}, 11);  // GGUF Q5_0/Q5_1/Q5_K as loaded
  check({5, 32, 11, 1027, 576, mx::float32}, 12);
}

TEST_F(Kernels, QuantizedMatmulPrefillRowsDequantizeThenMultiply) {
  REQUIRE_KERNELS();
  // From kQmmGemmRows rows on, the weight is dequantized (our AVX-512 unpacking, natural element order)
  // and multiplied by BLAS: every format and scale type against MLX's own kernel, odd N and K groups.
  uint64_t seed = 100;
  const int M = mlxgp::kernels::kQmmGemmRows + 7;
  for (int bits : {4, 5, 8})
    for (int group : {32, 64})
      for (auto dt : {mx::float32, mx::float16, mx::bfloat16}) check({bits, group, M, 67, 320, dt}, seed++);
  // Twice the threshold; below AVX-512 the row kernel takes every size.
  check({4, 32, 2 * mlxgp::kernels::kQmmGemmRows, 131, 192, mx::float32}, seed++);
  ASSERT_TRUE(mlxgp::kernels::set_cpu_isa_cap("avx2"));
  check({4, 32, M, 67, 192, mx::float16}, seed++);
  mlxgp::kernels::set_cpu_isa_cap("avx512");
  // Under a transform (training) the row kernel stays, so gradients never materialise the weight.
  auto w = mx::random::normal({40, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(seed));
  auto q = mx::quantize(w, 32, 4);
  auto x = mx::random::normal({M, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(seed + 1));
  auto loss = [&](auto f) { return mx::grad([f](const mx::array& a) { return mx::sum(mx::square(f(a))); })(x); };
  auto got = loss([&](const mx::array& a) { return mlxgp::kernels::quantized_matmul(a, q[0], q[1], q[2], 32, 4); });
  auto want = loss([&](const mx::array& a) { return mx::quantized_matmul(a, q[0], q[1], q[2], true, 32, 4); });
  EXPECT_LE(rel_err(got, want), 1e-4f);
}

TEST_F(Kernels, QuantizedMatmulBatchedAndStridedInputs) {
  REQUIRE_KERNELS();
  auto w = mx::random::normal({96, 128}, mx::float32, 0.0f, 1.0f, mx::random::key(3));
  auto q = mx::quantize(w, 64, 4);
  // [B, T, K] activations that are a transposed (non-contiguous) view.
  auto xt = mx::random::normal({2, 128, 3}, mx::float32, 0.0f, 1.0f, mx::random::key(4));
  auto x = mx::transpose(xt, {0, 2, 1});
  auto sc_t = mx::transpose(mx::transpose(q[1]));  // same values, exercised through a view
  auto ref = mx::quantized_matmul(x, q[0], sc_t, q[2], true, 64, 4);
  auto got = mlxgp::kernels::quantized_matmul(x, q[0], sc_t, q[2], 64, 4);
  mx::eval(ref, got);
  ASSERT_EQ(got.shape(), (mx::Shape{2, 3, 96}));
  EXPECT_LE(rel_err(got, ref), 1e-4f);
}

TEST_F(Kernels, UnsupportedFormatsFallBackToMlx) {
  auto w = mx::random::normal({32, 128}, mx::float32, 0.0f, 1.0f, mx::random::key(5));
  auto x = mx::random::normal({1, 128}, mx::float32, 0.0f, 1.0f, mx::random::key(6));
  for (auto [bits, group] : {std::pair{2, 64}, std::pair{4, 128}, std::pair{6, 32}}) {
    auto q = mx::quantize(w, group, bits);
    EXPECT_FALSE(mlxgp::kernels::quantized_matmul_supported(x, q[0], q[1], q[2], group, bits));
    auto ref = mx::quantized_matmul(x, q[0], q[1], q[2], true, group, bits);
    auto got = mlxgp::kernels::quantized_matmul(x, q[0], q[1], q[2], group, bits);
    EXPECT_LE(rel_err(got, ref), 0.0f) << "bits " << bits << " group " << group;
  }
  // float16 activations are not handled by the custom kernel either.
  auto q = mx::quantize(w, 32, 4);
  auto xh = mx::astype(x, mx::float16);
  EXPECT_FALSE(mlxgp::kernels::quantized_matmul_supported(xh, q[0], q[1], q[2], 32, 4));
  auto got = mlxgp::kernels::quantized_matmul(xh, q[0], q[1], q[2], 32, 4);
  EXPECT_EQ(got.dtype(), mx::quantized_matmul(xh, q[0], q[1], q[2], true, 32, 4).dtype());
}

TEST_F(Kernels, ReportsIsaAndThreads) {
  const std::string isa = mlxgp::kernels::cpu_isa();
  EXPECT_TRUE(isa == "avx512" || isa == "avx2" || isa == "portable") << isa;
  EXPECT_GE(mlxgp::kernels::num_threads(), 1);
}

TEST_F(Kernels, DenseLinearMatchesMatmulForEachIsa) {
  REQUIRE_KERNELS();
  uint64_t seed = 100;
  for (const char* isa : {"portable", "avx2", "avx512"}) {
    SCOPED_TRACE(isa);
    ASSERT_TRUE(mlxgp::kernels::set_cpu_isa_cap(isa));
    // K values with and without a SIMD tail; odd row counts; N large enough to be split.
    // M > 4 with N spanning many weight tiles (for_weight_tiles): each tile serves every row block.
    // M > 16 runs dense_gemm: a short last row vector (17, 124 rows), two panels (530 rows, the second of
    // 18), N not a multiple of the W block (48) or of either ISA's register block (4, 6).
    for (auto [M, N, K] :
         {std::tuple{1, 67, 192}, std::tuple{3, 130, 77}, std::tuple{8, 4099, 576}, std::tuple{5, 33, 1536},
          std::tuple{7, 517, 576}, std::tuple{17, 67, 77}, std::tuple{124, 1541, 576}, std::tuple{530, 101, 192}}) {
      SCOPED_TRACE("M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
      auto x = mx::random::normal({M, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed++));
      auto w = mx::random::normal({N, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed++));
      ASSERT_TRUE(mlxgp::kernels::linear_supported(x, w));
      auto ref = mx::matmul(x, mx::transpose(w));
      auto got = mlxgp::kernels::linear(x, w);
      mx::eval(ref, got);
      ASSERT_EQ(got.shape(), ref.shape());
      EXPECT_LE(rel_err(got, ref), 1e-5f);
      if (M > mlxgp::kernels::kLinearMaxRows) {
        // Each row is summed the same way wherever it sits among the rows: rotate the rows by 5 and
        // the result rotates with them, bit for bit (a batched prefill row equals its solo prefill).
        auto rot = [&](const mx::array& a) {
          return mx::concatenate({mx::slice(a, {5, 0}, {M, a.shape(1)}), mx::slice(a, {0, 0}, {5, a.shape(1)})}, 0);
        };
        EXPECT_TRUE(mx::array_equal(mlxgp::kernels::linear(rot(x), w), rot(got)).item<bool>());
        continue;
      }
      // Each row is summed as it is alone, whatever block of rows it falls in (a batch row equals its
      // solo run bit for bit).
      for (int m = 0; m < M; ++m) {
        auto row = mx::slice(x, {m, 0}, {m + 1, K});
        EXPECT_TRUE(mx::array_equal(mlxgp::kernels::linear(row, w), mx::slice(got, {m, 0}, {m + 1, N})).item<bool>())
            << "row " << m;
      }
    }
  }
  mlxgp::kernels::set_cpu_isa_cap("avx512");
}

TEST_F(Kernels, DenseLinearBatchedViewsAndFallback) {
  REQUIRE_KERNELS();
  auto w = mx::random::normal({40, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(11));
  auto xt = mx::random::normal({2, 64, 3}, mx::float32, 0.0f, 1.0f, mx::random::key(12));
  auto x = mx::transpose(xt, {0, 2, 1});  // [2, 3, 64] strided view
  auto got = mlxgp::kernels::linear(x, w);
  auto ref = mx::matmul(x, mx::transpose(w));
  EXPECT_EQ(got.shape(), (mx::Shape{2, 3, 40}));
  EXPECT_LE(rel_err(got, ref), 1e-5f);
  // Prefill-sized inputs take the tiles (a strided [2, 40, 64] view here); other dtypes go to mx::matmul.
  auto big = mx::transpose(mx::random::normal({2, 64, 40}, mx::float32, 0.0f, 1.0f, mx::random::key(13)), {0, 2, 1});
  EXPECT_TRUE(mlxgp::kernels::linear_supported(big, w));
  EXPECT_LE(rel_err(mlxgp::kernels::linear(big, w), mx::matmul(big, mx::transpose(w))), 1e-5f);
  EXPECT_FALSE(mlxgp::kernels::linear_supported(mx::astype(x, mx::bfloat16), mx::astype(w, mx::bfloat16)));
}

TEST_F(Kernels, SwiGluMatchesMlxValuesAndGradients) {
  REQUIRE_KERNELS();
  // Odd sizes (a SIMD tail), extreme values (exp clamping), a strided view.
  auto g =
      mx::multiply(mx::random::normal({3, 37, 129}, mx::float32, 0.0f, 1.0f, mx::random::key(21)), mx::array(6.0f));
  g = mx::concatenate({g, mx::full({3, 37, 3}, mx::array(-200.0f)), mx::full({3, 37, 3}, mx::array(200.0f))}, 2);
  auto u = mx::random::normal(g.shape(), mx::float32, 0.0f, 1.0f, mx::random::key(22));
  auto ref_fn = [](const mx::array& a, const mx::array& b) { return mx::multiply(mx::multiply(a, mx::sigmoid(a)), b); };
  ASSERT_TRUE(mlxgp::kernels::swiglu_supported(g, u));
  EXPECT_LE(rel_err(mlxgp::kernels::swiglu(g, u), ref_fn(g, u)), 1e-6f);
  auto gt = mx::transpose(g, {0, 2, 1}), ut = mx::transpose(u, {0, 2, 1});
  EXPECT_LE(rel_err(mlxgp::kernels::swiglu(gt, ut), ref_fn(gt, ut)), 1e-6f);
  // Gradients through the primitive's vjp against MLX's autodiff of the reference.
  auto loss = [&](auto f) {
    return mx::grad([f](const std::vector<mx::array>& p) { return mx::sum(f(p[0], p[1])); },
                    std::vector<int>{0, 1})(std::vector<mx::array>{g, u});
  };
  auto got = loss([](const mx::array& a, const mx::array& b) { return mlxgp::kernels::swiglu(a, b); });
  auto ref = loss(ref_fn);
  for (int i = 0; i < 2; ++i) EXPECT_LE(rel_err(got[i], ref[i]), 1e-6f) << "gradient " << i;
  // Other dtypes use MLX's ops.
  EXPECT_FALSE(mlxgp::kernels::swiglu_supported(mx::astype(g, mx::bfloat16), mx::astype(u, mx::bfloat16)));
}

TEST_F(Kernels, RmsNormEqualsMlxFallbackBitForBitWithGradients) {
  REQUIRE_KERNELS();
  // The primitive repeats mx::fast::rms_norm's CPU fallback exactly: odd widths (SIMD tails), a strided
  // view, a prefill-sized batch split across threads, large and tiny values.
  for (int d : {1, 7, 64, 100, 576, 1536}) {
    auto x = mx::multiply(mx::random::normal({2, 300, d}, mx::float32, 0.0f, 1.0f, mx::random::key(d)),
                          mx::array(d % 2 ? 1e-3f : 40.0f));
    auto w = mx::random::uniform({d}, mx::float32, mx::random::key(d + 1));
    ASSERT_TRUE(mlxgp::kernels::rms_norm_supported(x, w));
    EXPECT_TRUE(mx::array_equal(mlxgp::kernels::rms_norm(x, w, 1e-5f), mx::fast::rms_norm(x, w, 1e-5f)).item<bool>())
        << "D=" << d;
    auto xt = mx::transpose(mx::random::normal({d, 9}, mx::float32, 0.0f, 1.0f, mx::random::key(d + 2)), {1, 0});
    EXPECT_TRUE(mx::array_equal(mlxgp::kernels::rms_norm(xt, w, 1e-6f), mx::fast::rms_norm(xt, w, 1e-6f)).item<bool>())
        << "strided D=" << d;
  }
  auto x = mx::random::normal({3, 5, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(5));
  auto w = mx::random::uniform({64}, mx::float32, mx::random::key(6));
  auto loss = [&](auto f) {
    return mx::grad([f](const std::vector<mx::array>& p) { return mx::sum(mx::multiply(f(p[0], p[1]), p[0])); },
                    std::vector<int>{0, 1})(std::vector<mx::array>{x, w});
  };
  auto got = loss([](const mx::array& a, const mx::array& b) { return mlxgp::kernels::rms_norm(a, b, 1e-5f); });
  auto ref = loss([](const mx::array& a, const mx::array& b) { return mx::fast::rms_norm(a, b, 1e-5f); });
  for (int i = 0; i < 2; ++i) EXPECT_LE(rel_err(got[i], ref[i]), 1e-6f) << "gradient " << i;
  // Other dtypes and shapes use MLX's op.
  EXPECT_FALSE(mlxgp::kernels::rms_norm_supported(mx::astype(x, mx::bfloat16), mx::astype(w, mx::bfloat16)));
  EXPECT_FALSE(mlxgp::kernels::rms_norm_supported(x, mx::ones({32})));
}

TEST_F(Kernels, AttentionMatchesSdpaValuesAndGradients) {
  REQUIRE_KERNELS();
  // GQA (6 query heads on 2 key heads), a prefill chunk on top of cached keys (Tk > Tq), odd sizes; 40
  // queries over 1200 keys are split into query blocks (36 + 4: scores kept near 2 MB, causal blocks
  // multiplying only the keys they see).
  for (auto [tq, tk] : {std::pair{13, 13}, std::pair{7, 20}, std::pair{2, 9}, std::pair{40, 1200}}) {
    SCOPED_TRACE("Tq=" + std::to_string(tq) + " Tk=" + std::to_string(tk));
    auto q = mx::random::normal({2, 6, tq, 16}, mx::float32, 0.0f, 1.0f, mx::random::key(31 + tq));
    auto k = mx::random::normal({2, 2, tk, 16}, mx::float32, 0.0f, 1.0f, mx::random::key(32 + tk));
    auto v = mx::random::normal({2, 2, tk, 16}, mx::float32, 0.0f, 1.0f, mx::random::key(33));
    ASSERT_TRUE(mlxgp::kernels::attention_supported(q, k, v));
    for (bool causal : {true, false}) {
      auto ref = mx::fast::scaled_dot_product_attention(q, k, v, 0.25f, causal ? "causal" : "");
      EXPECT_LE(rel_err(mlxgp::kernels::attention(q, k, v, 0.25f, causal), ref), 1e-5f) << "causal " << causal;
      auto grads = [&](auto f) {
        return mx::grad([f](const std::vector<mx::array>& p) { return mx::sum(mx::square(f(p[0], p[1], p[2]))); },
                        std::vector<int>{0, 1, 2})(std::vector<mx::array>{q, k, v});
      };
      auto got = grads([causal](const mx::array& a, const mx::array& b, const mx::array& c) {
        return mlxgp::kernels::attention(a, b, c, 0.25f, causal);
      });
      auto want = grads([causal](const mx::array& a, const mx::array& b, const mx::array& c) {
        return mx::fast::scaled_dot_product_attention(a, b, c, 0.25f, causal ? "causal" : "");
      });
      for (int i = 0; i < 3; ++i) EXPECT_LE(rel_err(got[i], want[i]), 1e-4f) << "gradient " << i;
    }
  }
  // Query blocks of a left-padded batch: row 1's keys before 300 are hidden as well as the future ones.
  {
    const int tq = 40, tk = 1200;
    auto q = mx::random::normal({2, 6, tq, 16}, mx::float32, 0.0f, 1.0f, mx::random::key(34));
    auto k = mx::random::normal({2, 2, tk, 16}, mx::float32, 0.0f, 1.0f, mx::random::key(35));
    auto v = mx::random::normal({2, 2, tk, 16}, mx::float32, 0.0f, 1.0f, mx::random::key(36));
    std::vector<int> starts{0, 300};
    auto kj = mx::reshape(mx::arange(tk, mx::int32), {1, 1, 1, tk});
    auto mask = mx::logical_and(mx::greater_equal(kj, mx::array(starts.data(), {2, 1, 1, 1}, mx::int32)),
                                mx::less_equal(kj, mx::reshape(mx::arange(tk - tq, tk, mx::int32), {1, 1, tq, 1})));
    auto ref = mx::fast::scaled_dot_product_attention(q, k, v, 0.25f, "array", mask);
    EXPECT_LE(rel_err(mlxgp::kernels::attention(q, k, v, 0.25f, true, starts), ref), 1e-5f);
  }
  // The tiled prefill kernel at SmolLM2's head shape (9 query heads on 3 KV heads, D 64): queries a
  // transposed view (as the model's heads are), keys and values slices of a longer cache buffer, 70
  // queries (three tiles, the last one short: 3 x 6 = 18 rows, not a multiple of 8) over 700 keys (tiles
  // of 64 and a short one), causal or not, with row 1 left-padded to key 600; with each ISA's tiles.
  for (const char* isa : {"avx2", "avx512"}) {
    SCOPED_TRACE(isa);
    ASSERT_TRUE(mlxgp::kernels::set_cpu_isa_cap(isa));
    const int tq = 70, tk = 700;
    auto q =
        mx::transpose(mx::random::normal({2, tq, 9, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(37)), {0, 2, 1, 3});
    auto buf = [](int seed) {
      return mx::random::normal({2, 3, 768, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(seed));
    };
    auto k = mx::slice(buf(38), {0, 0, 0, 0}, {2, 3, tk, 64}), v = mx::slice(buf(39), {0, 0, 0, 0}, {2, 3, tk, 64});
    ASSERT_TRUE(mlxgp::kernels::prefill_attention_supported(q, k, v));
    std::vector<int> starts{0, 600};
    auto kj = mx::reshape(mx::arange(tk, mx::int32), {1, 1, 1, tk});
    auto after_start = mx::greater_equal(kj, mx::array(starts.data(), {2, 1, 1, 1}, mx::int32));
    for (bool causal : {true, false}) {
      SCOPED_TRACE(causal ? "causal" : "not causal");
      auto mask =
          causal ? mx::logical_and(after_start,
                                   mx::less_equal(kj, mx::reshape(mx::arange(tk - tq, tk, mx::int32), {1, 1, tq, 1})))
                 : after_start;
      auto ref = mx::fast::scaled_dot_product_attention(q, k, v, 0.125f, "array", mask);
      EXPECT_LE(rel_err(mlxgp::kernels::attention(q, k, v, 0.125f, causal, starts), ref), 1e-5f);
      auto plain = mx::fast::scaled_dot_product_attention(q, k, v, 0.125f, causal ? "causal" : "");
      EXPECT_LE(rel_err(mlxgp::kernels::attention(q, k, v, 0.125f, causal), plain), 1e-5f);
    }
    // A padded row's queries before its first key see only themselves (as the blocked route clamps):
    // finite, not NaN.
    // attention() takes the blocked route under a transformation; the tiles' own vjp is checked here.
    auto grads = [&](auto f) {
      return mx::grad([f](const std::vector<mx::array>& p) { return mx::sum(mx::square(f(p[0], p[1], p[2]))); },
                      std::vector<int>{0, 1, 2})(std::vector<mx::array>{q, k, v});
    };
    auto got = grads([&](const mx::array& a, const mx::array& b, const mx::array& c) {
      return mlxgp::kernels::prefill_attention(a, b, c, 0.125f, true, starts);
    });
    auto causal_mask = mx::logical_and(
        after_start, mx::less_equal(kj, mx::reshape(mx::arange(tk - tq, tk, mx::int32), {1, 1, tq, 1})));
    auto want = grads([&](const mx::array& a, const mx::array& b, const mx::array& c) {
      return mx::fast::scaled_dot_product_attention(a, b, c, 0.125f, "array", causal_mask);
    });
    for (int i = 0; i < 3; ++i) EXPECT_LE(rel_err(got[i], want[i]), 1e-4f) << "gradient " << i;
    auto padded = mlxgp::kernels::attention(q, k, v, 0.125f, true, {0, 690});
    EXPECT_TRUE(mx::all(mx::isfinite(padded)).item<bool>());
    EXPECT_LE(rel_err(padded, mlxgp::kernels::blocked_attention(q, k, v, 0.125f, true, {0, 690})), 1e-5f);
  }
  mlxgp::kernels::set_cpu_isa_cap("avx512");
  // A single query (decode) goes to decode_attention instead.
  auto q1 = mx::random::normal({1, 6, 1, 16}), k1 = mx::random::normal({1, 2, 5, 16});
  EXPECT_FALSE(mlxgp::kernels::attention_supported(q1, k1, k1));
}

TEST_F(Kernels, DecodeAttentionMatchesSdpaOnCacheViews) {
  REQUIRE_KERNELS();
  // Keys and values as the KV cache hands them over: the first Tk positions of a larger buffer (a strided
  // view), GQA with 3 and 1 query heads per KV head, head sizes 64 and 8, key counts not a multiple of 8.
  struct C {
    int B, hq, hk, d, tk;
  };
  // Rows of more than 512 visible keys run in chunks of 256 (flash-decoding): 1700, 1134 and 700 of them
  // below, with 3, 5 (a group of 3 and one of 2) and 2 query heads per KV head.
  for (auto c : {C{1, 9, 3, 64, 1}, C{3, 9, 3, 64, 37}, C{2, 4, 4, 8, 13}, C{3, 9, 3, 64, 1700}, C{2, 10, 2, 16, 1300},
                 C{1, 4, 2, 8, 700}}) {
    SCOPED_TRACE("B=" + std::to_string(c.B) + " Hq=" + std::to_string(c.hq) + " D=" + std::to_string(c.d) +
                 " Tk=" + std::to_string(c.tk));
    auto q = mx::random::normal({c.B, c.hq, 1, c.d}, mx::float32, 0.0f, 1.0f, mx::random::key(51 + c.tk));
    auto kbuf = mx::random::normal({c.B, c.hk, c.tk + 11, c.d}, mx::float32, 0.0f, 1.0f, mx::random::key(52));
    auto vbuf = mx::random::normal({c.B, c.hk, c.tk + 11, c.d}, mx::float32, 0.0f, 1.0f, mx::random::key(53));
    auto k = mx::slice(kbuf, {0, 0, 0, 0}, {c.B, c.hk, c.tk, c.d});
    auto v = mx::slice(vbuf, {0, 0, 0, 0}, {c.B, c.hk, c.tk, c.d});
    ASSERT_TRUE(mlxgp::kernels::decode_attention_supported(q, k, v));
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    auto ref = mx::fast::scaled_dot_product_attention(q, k, v, scale, "");
    EXPECT_LE(rel_err(mlxgp::kernels::attention(q, k, v, scale, true), ref), 2e-6f);
    EXPECT_LE(rel_err(mlxgp::kernels::decode_attention(q, k, v, scale), ref), 2e-6f);
    // Left-padded rows: row b sees keys from key_start[b] on (a start past the end keeps the last key).
    std::vector<int> starts;
    for (int b = 0; b < c.B; ++b) starts.push_back(b == 2 ? c.tk + 5 : b * c.tk / 3);
    auto j = mx::reshape(mx::arange(c.tk, mx::int32), {1, 1, 1, c.tk});
    std::vector<int> clamped;
    for (int s : starts) clamped.push_back(std::min(s, c.tk - 1));
    auto mask = mx::greater_equal(j, mx::array(clamped.data(), {c.B, 1, 1, 1}, mx::int32));
    auto masked_ref = mx::fast::scaled_dot_product_attention(q, k, v, scale, "array", mask);
    auto got = mlxgp::kernels::attention(q, k, v, scale, true, starts);
    EXPECT_LE(rel_err(got, masked_ref), 2e-6f);
    auto grads = [&](auto f) {
      return mx::grad([f](const std::vector<mx::array>& p) { return mx::sum(mx::square(f(p[0], p[1], p[2]))); },
                      std::vector<int>{0, 1, 2})(std::vector<mx::array>{q, k, v});
    };
    auto g_ours = grads([&](const mx::array& a, const mx::array& b, const mx::array& cc) {
      return mlxgp::kernels::decode_attention(a, b, cc, scale, starts);
    });
    auto g_ref = grads([&](const mx::array& a, const mx::array& b, const mx::array& cc) {
      return mx::fast::scaled_dot_product_attention(a, b, cc, scale, "array", mask);
    });
    for (int i = 0; i < 3; ++i) EXPECT_LE(rel_err(g_ours[i], g_ref[i]), 1e-4f) << "gradient " << i;
  }
  // A long row alone and the same row behind 300 positions of left padding: its chunks start at its first
  // visible key, so the two give the same bits (a batched request equals its solo run).
  {
    auto q = mx::random::normal({1, 9, 1, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(61));
    auto k = mx::random::normal({1, 3, 1500, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(62));
    auto v = mx::random::normal({1, 3, 1500, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(63));
    auto pad = mx::random::normal({1, 3, 300, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(64));
    auto alone = mlxgp::kernels::decode_attention(q, k, v, 0.125f);
    auto padded = mlxgp::kernels::decode_attention(q, mx::concatenate({pad, k}, 2), mx::concatenate({pad, v}, 2),
                                                   0.125f, std::vector<int>{300});
    EXPECT_TRUE(mx::array_equal(alone, padded).item<bool>());
  }
  // Keys and values whose last axis is strided (a transposed view) are copied row-major first.
  {
    auto q = mx::random::normal({1, 4, 1, 16}, mx::float32, 0.0f, 1.0f, mx::random::key(57));
    auto kt = mx::random::normal({1, 2, 16, 21}, mx::float32, 0.0f, 1.0f, mx::random::key(58));
    auto vt = mx::random::normal({1, 2, 16, 21}, mx::float32, 0.0f, 1.0f, mx::random::key(59));
    auto k = mx::swapaxes(kt, 2, 3), v = mx::swapaxes(vt, 2, 3);
    ASSERT_TRUE(mlxgp::kernels::decode_attention_supported(q, k, v));
    auto ref = mx::fast::scaled_dot_product_attention(q, k, v, 0.25f, "");
    EXPECT_LE(rel_err(mlxgp::kernels::decode_attention(q, k, v, 0.25f), ref), 2e-6f);
  }
  // Head sizes off the 8-float vector width and other dtypes stay on MLX's op.
  EXPECT_FALSE(mlxgp::kernels::decode_attention_supported(mx::zeros({1, 2, 1, 12}), mx::zeros({1, 2, 3, 12}),
                                                          mx::zeros({1, 2, 3, 12})));
  EXPECT_FALSE(mlxgp::kernels::decode_attention_supported(mx::zeros({1, 2, 1, 8}, mx::bfloat16),
                                                          mx::zeros({1, 2, 3, 8}, mx::bfloat16),
                                                          mx::zeros({1, 2, 3, 8}, mx::bfloat16)));
}

TEST_F(Kernels, DecodeAttentionReadsFloat16CachesAsTheirFloats) {
  REQUIRE_KERNELS();
  // A kv_cache_dtype float16 cache: keys and values as halves (strided views of larger buffers), converted
  // tile by tile, give the bits of the same values as floats: short rows, a long row in chunks, left padding.
  struct C {
    int B, hq, hk, d, tk;
  };
  for (auto c : {C{1, 9, 3, 64, 1}, C{3, 9, 3, 64, 37}, C{2, 4, 4, 8, 70}, C{2, 9, 3, 64, 1300}}) {
    SCOPED_TRACE("B=" + std::to_string(c.B) + " Tk=" + std::to_string(c.tk));
    auto q = mx::random::normal({c.B, c.hq, 1, c.d}, mx::float32, 0.0f, 1.0f, mx::random::key(71 + c.tk));
    auto kbuf = mx::astype(mx::random::normal({c.B, c.hk, c.tk + 5, c.d}, mx::float32, 0.0f, 3.0f, mx::random::key(72)),
                           mx::float16);
    auto vbuf = mx::astype(mx::random::normal({c.B, c.hk, c.tk + 5, c.d}, mx::float32, 0.0f, 3.0f, mx::random::key(73)),
                           mx::float16);
    auto k = mx::slice(kbuf, {0, 0, 0, 0}, {c.B, c.hk, c.tk, c.d});
    auto v = mx::slice(vbuf, {0, 0, 0, 0}, {c.B, c.hk, c.tk, c.d});
    ASSERT_TRUE(mlxgp::kernels::decode_attention_supported(q, k, v));
    auto kf = mx::astype(k, mx::float32), vf = mx::astype(v, mx::float32);
    std::vector<int> starts;
    for (int b = 0; b < c.B; ++b) starts.push_back(b * c.tk / 4);
    for (const auto& s : {std::vector<int>{}, starts}) {
      auto halves = mlxgp::kernels::attention(q, k, v, 0.125f, true, s);
      EXPECT_TRUE(mx::array_equal(halves, mlxgp::kernels::decode_attention(q, kf, vf, 0.125f, s)).item<bool>());
    }
  }
  // Prompts (several queries) take the halves as floats on the prefill route; mixed dtypes stay off the kernel.
  auto q = mx::random::normal({1, 4, 6, 16}, mx::float32, 0.0f, 1.0f, mx::random::key(75));
  auto k = mx::astype(mx::random::normal({1, 2, 9, 16}, mx::float32, 0.0f, 1.0f, mx::random::key(76)), mx::float16);
  EXPECT_TRUE(
      mx::array_equal(mlxgp::kernels::attention(q, k, k, 0.25f, true),
                      mlxgp::kernels::attention(q, mx::astype(k, mx::float32), mx::astype(k, mx::float32), 0.25f, true))
          .item<bool>());
  EXPECT_FALSE(mlxgp::kernels::decode_attention_supported(mx::zeros({1, 2, 1, 8}), mx::zeros({1, 2, 3, 8}, mx::float16),
                                                          mx::zeros({1, 2, 3, 8})));
}

TEST_F(Kernels, RopeMatchesMlxValuesAndGradients) {
  REQUIRE_KERNELS();
  // The head split's strided view [B, T, H, D] -> [B, H, T, D], full and partial rotary dims, offsets,
  // position scaling (transformers' "linear" rope scaling).
  struct C {
    int dims, offset;
    float base, scale;
  };
  for (auto c : {C{16, 0, 10000.0f, 1.0f}, C{16, 123, 100000.0f, 1.0f}, C{8, 5, 10000.0f, 0.25f}}) {
    SCOPED_TRACE("dims=" + std::to_string(c.dims) + " offset=" + std::to_string(c.offset));
    auto raw = mx::random::normal({2, 7, 3, 16}, mx::float32, 0.0f, 1.0f, mx::random::key(41 + c.offset));
    auto x = mx::transpose(raw, {0, 2, 1, 3});
    ASSERT_TRUE(mlxgp::kernels::rope_supported(x, c.dims));
    auto ours = [c](const mx::array& a) { return mlxgp::kernels::rope(a, c.dims, c.base, c.scale, c.offset); };
    auto ref = [c](const mx::array& a) { return mx::fast::rope(a, c.dims, false, c.base, c.scale, c.offset); };
    EXPECT_LE(rel_err(ours(x), ref(x)), 2e-6f);
    // Features past `dims` pass through untouched.
    if (c.dims < 16) {
      auto tail = [](const mx::array& a) { return mx::slice(a, {0, 0, 0, 8}, {2, 3, 7, 16}); };
      EXPECT_EQ(mx::max(mx::abs(mx::subtract(tail(ours(x)), tail(x)))).item<float>(), 0.0f);
    }
    auto grad = [](auto f, const mx::array& a) {
      return mx::grad([f](const mx::array& p) { return mx::sum(mx::square(mx::sin(f(p)))); })(a);
    };
    EXPECT_LE(rel_err(grad(ours, x), grad(ref, x)), 1e-5f);
  }
  EXPECT_FALSE(mlxgp::kernels::rope_supported(mx::zeros({1, 2, 3, 8}, mx::bfloat16), 8));
  EXPECT_FALSE(mlxgp::kernels::rope_supported(mx::zeros({1, 2, 3, 8}), 10));
}

// The one-pass argmax + invalid-logits test against MLX's ops on the same logits: ties (first index wins),
// maxima in the tail after the last 8 lanes, NaN, +inf, rows of -inf, and a strided view.
TEST_F(Kernels, LogitsScanEqualsArgmaxAndInvalidRowOps) {
  REQUIRE_KERNELS();
  const float inf = std::numeric_limits<float>::infinity();
  const int rows = 9, V = 1003;
  std::vector<float> h(static_cast<size_t>(rows) * V);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>((i * 7919) % 6);  // many tied maxima
  auto at = [&](int r, int c) -> float& { return h[static_cast<size_t>(r) * V + c]; };
  for (int c = 0; c < V; ++c) at(1, c) = -1.0f;
  at(1, V - 2) = 3.0f;                                   // row 1: its only maximum sits in the tail
  at(2, 500) = std::numeric_limits<float>::quiet_NaN();  // row 2: NaN
  at(3, 17) = inf;                                       // row 3: +inf
  for (int c = 0; c < V; ++c) at(4, c) = -inf;           // row 4: all -inf
  at(5, 3) = -inf;                                       // row 5: one -inf among finite values (valid)
  auto x = mx::array(h.data(), {rows, V}, mx::float32);
  auto check = [&](const mx::array& logits) {
    auto got = mlxgp::kernels::logits_scan(logits);
    auto ref_rows = mx::logical_or(mx::any(mx::logical_or(mx::isnan(logits), mx::equal(logits, mx::array(inf))), -1),
                                   mx::equal(mx::max(logits, -1), mx::array(-inf)));
    auto ref_arg = mx::astype(mx::argmax(logits, -1), mx::int32);
    mx::eval(got.argmax, got.invalid_row, got.invalid, ref_rows, ref_arg);
    ASSERT_EQ(got.argmax.shape(), ref_arg.shape());
    EXPECT_TRUE(mx::array_equal(got.invalid_row, ref_rows).item<bool>());
    EXPECT_EQ(got.invalid.item<bool>(), mx::any(ref_rows).item<bool>());
    auto valid = mx::logical_not(mx::reshape(ref_rows, {-1}));
    EXPECT_TRUE(mx::all(mx::logical_or(mx::logical_not(valid),
                                       mx::equal(mx::reshape(got.argmax, {-1}), mx::reshape(ref_arg, {-1}))))
                    .item<bool>());
  };
  check(x);
  EXPECT_TRUE(mx::take(mlxgp::kernels::logits_scan(x).invalid_row, 2).item<bool>());
  EXPECT_EQ(mx::take(mlxgp::kernels::logits_scan(x).argmax, 1).item<int32_t>(), V - 2);
  auto valid_rows = mx::slice(x, {5, 0}, {rows, V});
  check(valid_rows);
  EXPECT_FALSE(mlxgp::kernels::logits_scan(valid_rows).invalid.item<bool>());
  check(mx::slice(x, {0, 1}, {rows, V}, {1, 2}));         // a strided view (every other column)
  check(mx::reshape(mx::slice(x, {0, 0}, {1, 7}), {7}));  // one row shorter than the 8 lanes
  EXPECT_FALSE(mlxgp::kernels::logits_scan_supported(mx::astype(x, mx::float16)));
}
