// The quantized KV cache's CPU kernels against MLX, run in the same test: quantize_row gives mx::quantize's
// bits, and quantized_decode_attention gives the attention of the dequantized cache (what mlx-lm's
// quantized_scaled_dot_product_attention computes) to float32 rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <mlx/mlx.h>

#include "mlxgp/quantized_kv_cache.h"

#include "kernels/kernels.h"
#include "kernels/quantized_kv_rows.h"
#include "test_models_util.h"

namespace mx = mlx::core;
namespace k = mlxgp::kernels;

namespace {

class QuantizedKvKernels : public mlxgp::testing::CpuDefaultDevice {};

float rel_err(const mx::array& a, const mx::array& b) {
  auto d = mx::max(mx::abs(mx::subtract(a, b))).item<float>();
  return d / (mx::max(mx::abs(b)).item<float>() + 1e-30f);
}

// Rows that reach each branch of the quantizer: a constant row (zero range, the eps scale), zeros, a
// negative edge of larger magnitude, a positive one, values a rounding step apart, large magnitudes.
mx::array special_rows(int D) {
  std::vector<float> v;
  for (int r = 0; r < 6; ++r)
    for (int e = 0; e < D; ++e) {
      switch (r) {
        case 0:
          v.push_back(0.75f);
          break;
        case 1:
          v.push_back(0.0f);
          break;
        case 2:
          v.push_back(e == 3 ? -9.0f : 0.01f * static_cast<float>(e));
          break;
        case 3:
          v.push_back(e == 5 ? 7.0f : -0.02f * static_cast<float>(e));
          break;
        case 4:
          v.push_back(static_cast<float>(e % 3) * 0.5f);
          break;
        default:
          v.push_back((e % 2 ? 1e4f : -3e3f) * static_cast<float>(e + 1));
      }
    }
  return mx::array(v.data(), {6, D}, mx::float32);
}

// A quantized cache's keys or values as the cache hands them over: the first tk positions of a buffer with
// `spare` more (strided views), and the same positions dequantized (what the kernels must match).
struct QuantizedCache {
  k::QuantizedArrays q;
  mx::array dequantized;
};
QuantizedCache quantized_tensor(int B, int hk, int tk, int d, int spare, int group, int bits, int seed) {
  auto buf = mx::random::normal({B, hk, tk + spare, d}, mx::float32, 0.0f, 1.0f, mx::random::key(seed));
  auto qz = mx::quantize(buf, group, bits);
  auto view = [&](const mx::array& a) { return mx::slice(a, {0, 0, 0, 0}, {B, hk, tk, a.shape(3)}); };
  k::QuantizedArrays q{view(qz[0]), view(qz[1]), view(qz[2])};
  return {q, mx::dequantize(q.data, q.scales, q.biases, group, bits)};
}

// Keys (seed) and values (seed + 1).
std::pair<QuantizedCache, QuantizedCache> quantized_cache(int B, int hk, int tk, int d, int spare, int group, int bits,
                                                          int seed) {
  return {quantized_tensor(B, hk, tk, d, spare, group, bits, seed),
          quantized_tensor(B, hk, tk, d, spare, group, bits, seed + 1)};
}

}  // namespace

TEST_F(QuantizedKvKernels, QuantizeRowEqualsMlxQuantizeBitForBit) {
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    if (bits == 3 || bits == 5 || bits == 6) continue;  // packed across bytes: the fused step keeps MLX's op
    for (int group : {32, 64, 128}) {
      SCOPED_TRACE("bits=" + std::to_string(bits) + " group=" + std::to_string(group));
      const int D = 128;
      auto x = mx::concatenate(
          {mx::random::normal({40, D}, mx::float32, 0.0f, 2.0f, mx::random::key(bits * 7 + group)), special_rows(D)},
          0);
      mx::eval(x);
      auto ref = mx::quantize(x, group, bits);
      mx::eval(ref);
      const int rows = x.shape(0), words = D * bits / 32, groups = D / group;
      std::vector<uint32_t> data(static_cast<size_t>(rows) * words);
      std::vector<float> scales(static_cast<size_t>(rows) * groups), biases(scales.size());
      for (int r = 0; r < rows; ++r)
        k::quantize_row(x.data<float>() + r * D, D, group, bits, data.data() + r * words, scales.data() + r * groups,
                        biases.data() + r * groups);
      ASSERT_EQ(ref[0].size(), data.size());
      EXPECT_EQ(std::memcmp(ref[0].data<uint32_t>(), data.data(), data.size() * 4), 0);
      EXPECT_EQ(std::memcmp(ref[1].data<float>(), scales.data(), scales.size() * 4), 0);
      EXPECT_EQ(std::memcmp(ref[2].data<float>(), biases.data(), biases.size() * 4), 0);
    }
  }
}

// Keys and values quantized as the cache stores them (a larger buffer's first Tk positions, so strided
// views), against MLX's attention of the dequantized keys and values; rows of more than 512 keys run in
// chunks (1300 below), GQA with 3 and 2 query heads per KV head, left-padded rows through key starts.
TEST_F(QuantizedKvKernels, DecodeAttentionMatchesTheDequantizedCache) {
  if (!k::available()) GTEST_SKIP() << "the CPU kernels do not run on this machine";
  struct C {
    int B, hq, hk, d, tk, bits, group;
  };
  for (auto c : {C{1, 9, 3, 64, 1, 8, 64}, C{3, 9, 3, 64, 37, 8, 64}, C{2, 4, 2, 64, 130, 4, 32},
                 C{2, 6, 3, 128, 1300, 4, 64}, C{3, 9, 3, 64, 700, 2, 64}, C{1, 4, 2, 32, 19, 8, 32}}) {
    SCOPED_TRACE("B=" + std::to_string(c.B) + " Hq=" + std::to_string(c.hq) + " D=" + std::to_string(c.d) + " Tk=" +
                 std::to_string(c.tk) + " bits=" + std::to_string(c.bits) + " group=" + std::to_string(c.group));
    auto q = mx::random::normal({c.B, c.hq, 1, c.d}, mx::float32, 0.0f, 1.0f, mx::random::key(71 + c.tk));
    const auto [kc, vc] = quantized_cache(c.B, c.hk, c.tk, c.d, 9, c.group, c.bits, 72);
    const auto &kq = kc.q, &vq = vc.q;
    const auto &kf = kc.dequantized, &vf = vc.dequantized;
    ASSERT_TRUE(k::quantized_decode_attention_supported(q, kq, vq, c.group, c.bits));
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    auto ref = mx::fast::scaled_dot_product_attention(q, kf, vf, scale, "");
    EXPECT_LE(rel_err(k::quantized_decode_attention(q, kq, vq, scale, c.group, c.bits), ref), 2e-6f);
    std::vector<int> starts, clamped;
    for (int b = 0; b < c.B; ++b) starts.push_back(b == 2 ? c.tk + 5 : b * c.tk / 3);
    for (int s : starts) clamped.push_back(std::min(s, c.tk - 1));
    auto j = mx::reshape(mx::arange(c.tk, mx::int32), {1, 1, 1, c.tk});
    auto mask = mx::greater_equal(j, mx::array(clamped.data(), {c.B, 1, 1, 1}, mx::int32));
    auto masked_ref = mx::fast::scaled_dot_product_attention(q, kf, vf, scale, "array", mask);
    EXPECT_LE(rel_err(k::quantized_decode_attention(q, kq, vq, scale, c.group, c.bits, starts), masked_ref), 2e-6f);
    // The cache's own entry point takes the kernel for one query and gives the same numbers.
    mlxgp::QuantizedTensor kt{kq.data, kq.scales, kq.biases}, vt{vq.data, vq.scales, vq.biases};
    EXPECT_LE(rel_err(mlxgp::quantized_attention(q, kt, vt, scale, mlxgp::AttentionMask{}, c.group, c.bits), ref),
              2e-6f);
  }
  // What the kernels do not cover stays on MLX's ops: 3-bit packing, bfloat16 queries, a traced query.
  auto q = mx::zeros({1, 2, 1, 64});
  auto t = [](int bits) {
    auto z = mx::quantize(mx::zeros({1, 2, 5, 64}), 64, bits);
    return k::QuantizedArrays{z[0], z[1], z[2]};
  };
  EXPECT_TRUE(k::quantized_decode_attention_supported(q, t(4), t(4), 64, 4));
  EXPECT_FALSE(k::quantized_decode_attention_supported(q, t(3), t(3), 64, 3));
  EXPECT_FALSE(k::quantized_decode_attention_supported(mx::astype(q, mx::bfloat16), t(4), t(4), 64, 4));
  auto traced = mx::vjp(
      [&](const std::vector<mx::array>& in) {
        EXPECT_FALSE(k::quantized_decode_attention_supported(in[0], t(4), t(4), 64, 4));
        return std::vector<mx::array>{mx::sum(in[0])};
      },
      {q}, {mx::array(1.0f)});
  (void)traced;
}

// A prompt chunk on top of a quantized cache (Tq < Tk: causal aligned to the last key), a whole prompt
// (Tq = Tk), no mask, and left-padded rows through key starts, against MLX's sdpa over the dequantized cache.
TEST_F(QuantizedKvKernels, PrefillAttentionMatchesTheDequantizedCache) {
  if (!k::available()) GTEST_SKIP() << "the CPU kernels do not run on this machine";
  struct C {
    int B, hq, hk, d, tq, tk, bits, group;
  };
  for (auto c : {C{1, 9, 3, 64, 40, 40, 8, 64}, C{2, 9, 3, 64, 70, 200, 4, 64}, C{3, 4, 2, 32, 33, 97, 8, 32},
                 C{1, 6, 3, 128, 130, 700, 2, 64}}) {
    SCOPED_TRACE("B=" + std::to_string(c.B) + " Tq=" + std::to_string(c.tq) + " Tk=" + std::to_string(c.tk) +
                 " bits=" + std::to_string(c.bits));
    auto q = mx::random::normal({c.B, c.hq, c.tq, c.d}, mx::float32, 0.0f, 1.0f, mx::random::key(81 + c.tq));
    const auto [kc, vc] = quantized_cache(c.B, c.hk, c.tk, c.d, 5, c.group, c.bits, 82);
    const auto &kq = kc.q, &vq = vc.q;
    const auto &kf = kc.dequantized, &vf = vc.dequantized;
    ASSERT_TRUE(k::quantized_prefill_attention_supported(q, kq, vq, c.group, c.bits));
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    for (bool causal : {true, false}) {
      SCOPED_TRACE(causal ? "causal" : "no mask");
      auto ref = mx::fast::scaled_dot_product_attention(q, kf, vf, scale, causal ? "causal" : "");
      EXPECT_LE(rel_err(k::quantized_prefill_attention(q, kq, vq, scale, causal, c.group, c.bits), ref), 2e-6f);
      // The cache's own entry point takes the kernel for a prompt chunk.
      mlxgp::AttentionMask mask;
      mask.kind = causal ? mlxgp::AttentionMask::Kind::Causal : mlxgp::AttentionMask::Kind::None;
      mlxgp::QuantizedTensor kt{kq.data, kq.scales, kq.biases}, vt{vq.data, vq.scales, vq.biases};
      EXPECT_LE(rel_err(mlxgp::quantized_attention(q, kt, vt, scale, mask, c.group, c.bits), ref), 2e-6f);
    }
    // Left padding: row b's keys before starts[b] are hidden, causal besides.
    std::vector<int> starts;
    for (int b = 0; b < c.B; ++b) starts.push_back(b * 7);
    auto kj = mx::reshape(mx::arange(c.tk, mx::int32), {1, 1, 1, c.tk});
    auto qi = mx::reshape(mx::arange(c.tk - c.tq, c.tk, mx::int32), {1, 1, c.tq, 1});
    auto visible = mx::logical_and(mx::greater_equal(kj, mx::array(starts.data(), {c.B, 1, 1, 1}, mx::int32)),
                                   mx::less_equal(kj, qi));
    auto ref = mx::fast::scaled_dot_product_attention(q, kf, vf, scale, "array", visible);
    auto got = k::quantized_prefill_attention(q, kq, vq, scale, true, c.group, c.bits, starts);
    // Every start is before the row's first query position, so each query sees at least one key.
    EXPECT_LE(rel_err(got, ref), 2e-6f);
  }
}
