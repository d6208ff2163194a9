// kernels::ggml_matmul_fused: the norm before, the swiglu or residual add after a llama.cpp block product,
// run in the product's node, give the ops one by one bit for bit (so fusing never changes an output), and
// their gradient.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include <mlx/mlx.h>

#include "kernels/ggml_blocks.h"
#include "kernels/ggml_product.h"
#include "kernels/ggml_q8.h"
#include "kernels/kernels.h"
#include "ggml_test_blocks.h"
#include "test_models_util.h"

namespace mx = mlx::core;
namespace k = mlxgp::kernels;
using mlxgp::testing::random_blocks;

namespace {

class GgmlFused : public mlxgp::testing::CpuDefaultDevice {};

bool same_bits(const mx::array& a, const mx::array& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && mx::array_equal(a, b, /*equal_nan=*/true).item<bool>();
}

// The weights the Linears of one layer would hand over: stored, and their int8 repacks where those apply.
struct Weights {
  std::vector<mx::array> ws, packed;
};

Weights weights(uint32_t type, std::vector<int> rows, int K, bool int8, uint32_t& seed) {
  Weights w;
  for (int n : rows) w.ws.push_back(random_blocks(type, n, K, seed++));
  if (!int8) return w;
  for (auto& a : w.ws)
    if (auto p = k::ggml_q8_pack(a, type, K)) w.packed.push_back(*p);
  if (w.packed.size() != w.ws.size()) w.packed.clear();
  return w;
}

mx::array w0(uint32_t& seed) { return random_blocks(k::kGgmlQ4_1, 16, 64, seed++); }

}  // namespace

TEST_F(GgmlFused, EqualsTheOpsOneByOneBitForBit) {
  uint32_t seed = 1;
  for (uint32_t type : {k::kGgmlQ4_0, k::kGgmlQ4_1, k::kGgmlQ5_1, k::kGgmlQ8_0, k::kGgmlQ6_K}) {
    for (bool int8 : {false, true}) {
      if (int8 && !k::ggml_q8_supported(type)) continue;
      const int K = type == k::kGgmlQ6_K ? 256 : 96;
      auto qkv = weights(type, {48, 16, 16}, K, int8, seed), gate_up = weights(type, {K, K}, K, int8, seed),
           down = weights(type, {K}, K, int8, seed);
      if (int8) {
        ASSERT_EQ(qkv.packed.empty(), !k::ggml_q8_packable(type, 16));
      }
      for (int M : {1, 3, 16, 40}) {
        SCOPED_TRACE("type " + std::to_string(type) + " int8 " + std::to_string(int8) + " M=" + std::to_string(M));
        auto x = mx::random::normal({1, M, K}, mx::float32, 0.0f, 2.0f, mx::random::key(seed++));
        if (!k::ggml_cpu_product(type, M, int8)) {
          // More rows than this CPU's block products take (types without SIMD rows on it): no fused node either.
          EXPECT_FALSE(k::ggml_matmul_fused(x, qkv.ws, type, int8, qkv.packed, {}).has_value());
          continue;
        }
        if (M == 3) x = mx::where(mx::equal(mx::arange(K), mx::array(7)), mx::array(NAN), x);  // NaN rows
        auto nw = mx::random::uniform(0.5f, 1.5f, {K}, mx::float32, mx::random::key(seed++));
        const float eps = 1e-5f;
        auto normed = k::rms_norm(x, nw, eps);
        k::GgmlFusion norm;
        norm.norm_weight = nw;
        norm.eps = eps;
        // q, k and v of the normalised input.
        auto got = k::ggml_matmul_fused(x, qkv.ws, type, int8, qkv.packed, norm);
        ASSERT_TRUE(got.has_value());
        auto want = k::ggml_matmul_multi(normed, qkv.ws, type, int8, qkv.packed);
        ASSERT_EQ(got->size(), 3u);
        for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(same_bits((*got)[i], want[i])) << "output " << i;
        // silu(gate) * up, with and without the norm before.
        for (bool with_norm : {false, true}) {
          k::GgmlFusion f = with_norm ? norm : k::GgmlFusion{};
          f.swiglu = true;
          auto mid = k::ggml_matmul_fused(x, gate_up.ws, type, int8, gate_up.packed, f);
          ASSERT_TRUE(mid.has_value());
          ASSERT_EQ(mid->size(), 1u);
          auto gu = k::ggml_matmul_multi(with_norm ? normed : x, gate_up.ws, type, int8, gate_up.packed);
          EXPECT_TRUE(same_bits((*mid)[0], k::swiglu(gu[0], gu[1]))) << "norm " << with_norm;
        }
        // residual + down(h).
        auto h = mx::random::normal({1, M, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed++));
        auto r = mx::random::normal({1, M, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed++));
        k::GgmlFusion res;
        res.residual = r;
        auto added = k::ggml_matmul_fused(h, down.ws, type, int8, down.packed, res);
        ASSERT_TRUE(added.has_value());
        auto one = k::ggml_matmul(h, down.ws[0], type, int8,
                                  down.packed.empty() ? std::nullopt : std::optional(down.packed[0]));
        EXPECT_TRUE(same_bits((*added)[0], mx::add(r, one)));
      }
    }
  }
}

// q and k rotated in the node equal kernels::rope over their head split (one offset, or one per batch row;
// full and partial rotary dims), v untouched, the norm before still applied.
TEST_F(GgmlFused, RopeEqualsKernelsRopeOnTheHeadSplit) {
  uint32_t seed = 300;
  auto head_split = [](const mx::array& y, int head_dim) {
    return mx::transpose(mx::reshape(y, {y.shape(0), y.shape(1), y.shape(2) / head_dim, head_dim}), {0, 2, 1, 3});
  };
  for (bool int8 : {false, true}) {
    if (int8 && !k::ggml_q8_supported(k::kGgmlQ4_1)) continue;
    auto w = weights(k::kGgmlQ4_1, {64, 32, 32}, 64, int8, seed);
    for (int dims : {16, 8}) {
      for (bool rows : {false, true}) {
        SCOPED_TRACE("int8 " + std::to_string(int8) + " dims " + std::to_string(dims) + " rows " +
                     std::to_string(rows));
        auto x = mx::random::normal({2, 3, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(seed++));
        auto nw = mx::random::uniform(0.5f, 1.5f, {64}, mx::float32, mx::random::key(seed++));
        k::GgmlFusion f;
        f.norm_weight = nw;
        f.eps = 1e-6f;
        f.rope = k::GgmlRope{dims, 16, 10000.0f, 0.5f, 7, rows ? std::vector<int>{0, 11} : std::vector<int>{}};
        auto got = k::ggml_matmul_fused(x, w.ws, k::kGgmlQ4_1, int8, w.packed, f);
        ASSERT_TRUE(got.has_value());
        auto plain = k::ggml_matmul_multi(k::rms_norm(x, nw, 1e-6f), w.ws, k::kGgmlQ4_1, int8, w.packed);
        for (int i = 0; i < 2; ++i) {
          auto h = head_split(plain[i], 16);
          auto want =
              rows ? k::rope(h, dims, 10000.0f, 0.5f, std::vector<int>{0, 11}) : k::rope(h, dims, 10000.0f, 0.5f, 7);
          EXPECT_TRUE(same_bits(head_split((*got)[i], 16), want)) << "output " << i;
          EXPECT_FALSE(same_bits((*got)[i], plain[i])) << "output " << i;
        }
        EXPECT_TRUE(same_bits((*got)[2], plain[2]));
      }
    }
  }
  k::GgmlFusion f;
  f.rope = k::GgmlRope{16, 16, 10000.0f, 1.0f, 0, {}};
  EXPECT_THROW(k::ggml_matmul_fused(mx::ones({1, 1, 64}), {w0(seed)}, k::kGgmlQ4_1, false, {}, f),
               std::invalid_argument);
  f.rope->row_offsets = {1, 2, 3};  // not one per batch row: no fused node
  auto w = weights(k::kGgmlQ4_1, {16, 16}, 64, false, seed);
  EXPECT_FALSE(k::ggml_matmul_fused(mx::ones({2, 1, 64}), w.ws, k::kGgmlQ4_1, false, {}, f).has_value());
  // Gradient through the rotation: that of the ops one by one.
  f.rope->row_offsets = {};
  f.rope->offset = 3;
  auto x = mx::random::normal({1, 2, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(seed++));
  auto loss = [&](const mx::array& xx, bool fused) {
    auto y = fused ? *k::ggml_matmul_fused(xx, w.ws, k::kGgmlQ4_1, false, {}, f)
                   : k::ggml_matmul_multi(xx, w.ws, k::kGgmlQ4_1);
    if (!fused)
      for (auto& o : y)
        o = mx::reshape(mx::transpose(k::rope(head_split(o, 16), 16, 10000.0f, 1.0f, 3), {0, 2, 1, 3}), o.shape());
    return mx::sum(mx::multiply(y[0], mx::add(y[1], mx::array(1.0f))));
  };
  auto g1 = mx::grad([&](const mx::array& xx) { return loss(xx, true); })(x);
  auto g0 = mx::grad([&](const mx::array& xx) { return loss(xx, false); })(x);
  EXPECT_LE(mx::max(mx::abs(mx::subtract(g1, g0))).item<float>(), 1e-5f * (mx::max(mx::abs(g0)).item<float>() + 1.0f));
}

// Where the node would not be the CPU primitive (a prefill-sized float product, a float16 input, a residual
// that is not the output's shape), there is no fused node and the caller runs the ops one by one; misuse
// is refused.
TEST_F(GgmlFused, DeclinesOrRefusesWhatItCannotFuse) {
  uint32_t seed = 100;
  auto w = weights(k::kGgmlQ4_1, {16, 16}, 64, false, seed);
  k::GgmlFusion sw;
  sw.swiglu = true;
  EXPECT_TRUE(k::ggml_matmul_fused(mx::ones({2, 64}), w.ws, k::kGgmlQ4_1, false, {}, sw).has_value());
  EXPECT_FALSE(k::ggml_matmul_fused(mx::ones({300, 64}), w.ws, k::kGgmlQ4_1, false, {}, sw).has_value());
  EXPECT_FALSE(k::ggml_matmul_fused(mx::ones({2, 64}, mx::float16), w.ws, k::kGgmlQ4_1, false, {}, sw).has_value());
  k::GgmlFusion res;
  res.residual = mx::ones({2, 8});
  EXPECT_FALSE(k::ggml_matmul_fused(mx::ones({2, 64}), {w.ws[0]}, k::kGgmlQ4_1, false, {}, res).has_value());
  EXPECT_THROW(k::ggml_matmul_fused(mx::ones({2, 64}), {w.ws[0]}, k::kGgmlQ4_1, false, {}, sw), std::invalid_argument);
  res.residual = mx::ones({2, 16});
  EXPECT_THROW(k::ggml_matmul_fused(mx::ones({2, 64}), w.ws, k::kGgmlQ4_1, false, {}, res), std::invalid_argument);
  EXPECT_THROW(k::ggml_matmul_fused(mx::ones({2, 96}), w.ws, k::kGgmlQ4_1, false, {}, sw), std::invalid_argument);
}

// The fused node's gradient in x, the norm's weight and the residual is that of the ops one by one; the
// weights stay frozen.
TEST_F(GgmlFused, GradientIsTheOpsOneByOne) {
  uint32_t seed = 200;
  auto gu = weights(k::kGgmlQ4_1, {64, 64}, 64, false, seed), down = weights(k::kGgmlQ4_1, {64}, 64, false, seed);
  auto x = mx::random::normal({2, 64}, mx::float32, 0.0f, 1.0f, mx::random::key(1));
  auto nw = mx::random::uniform(0.5f, 1.5f, {64}, mx::float32, mx::random::key(2));
  auto layer = [&](const std::vector<mx::array>& in, bool fused) {
    if (fused) {
      k::GgmlFusion f;
      f.norm_weight = in[1];
      f.eps = 1e-6f;
      f.swiglu = true;
      auto mid = (*k::ggml_matmul_fused(in[0], gu.ws, k::kGgmlQ4_1, false, {}, f))[0];
      k::GgmlFusion r;
      r.residual = in[0];
      return mx::sum(mx::square((*k::ggml_matmul_fused(mid, down.ws, k::kGgmlQ4_1, false, {}, r))[0]));
    }
    auto y = k::ggml_matmul_multi(k::rms_norm(in[0], in[1], 1e-6f), gu.ws, k::kGgmlQ4_1);
    auto out = mx::add(in[0], k::ggml_matmul(k::swiglu(y[0], y[1]), down.ws[0], k::kGgmlQ4_1));
    return mx::sum(mx::square(out));
  };
  auto grads = [&](bool fused) {
    return mx::vjp([&](const std::vector<mx::array>& in) { return std::vector{layer(in, fused)}; }, {x, nw},
                   {mx::array(1.0f)})
        .second;
  };
  auto got = grads(true), want = grads(false);
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    auto d = mx::max(mx::abs(mx::subtract(got[i], want[i]))).item<float>();
    EXPECT_LE(d, 1e-6f * (mx::max(mx::abs(want[i])).item<float>() + 1.0f)) << "input " << i;
    EXPECT_GT(mx::max(mx::abs(got[i])).item<float>(), 0.0f);
  }
  auto frozen = [&](const mx::array& w) {
    k::GgmlFusion r;
    r.residual = mx::zeros({2, 64});
    return mx::sum((*k::ggml_matmul_fused(mx::ones({2, 64}), {w}, k::kGgmlQ4_1, false, {}, r))[0]);
  };
  EXPECT_THROW(mx::grad(frozen)(down.ws[0]), std::invalid_argument);
}
