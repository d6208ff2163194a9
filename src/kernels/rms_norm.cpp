// mlxgp::kernels::rms_norm: x * rsqrt(mean(x^2) + eps) * w as one CPU primitive. On the CPU,
// mx::fast::rms_norm falls back to seven or more graph nodes (square, sum, scale, add, rsqrt, two
// multiplies and their broadcasts); a decode step of a 30-layer model has 61 norms, and at a few
// microseconds of MLX bookkeeping per node that costs about a millisecond per token.
//
// The arithmetic is that fallback's, bit for bit, so no result changes: squares summed one after another
// in float32 (MLX's CPU reduction on Linux has no SIMD lanes), mean = sum * float(1 / D),
// scale = 1 / sqrt(mean + eps), then (x * scale) * w. (ggml sums in double; transformers in torch's
// pairwise order: all agree to a unit in the last place of the scale.)
#include <algorithm>
#include <cmath>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <memory>
#include <stdexcept>
#include <vector>

#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "kernels/cpu_task.h"
#include "kernels/fused_rows.h"
#include "kernels/kernels.h"
#include "kernels/qmm_cpu.h"
#include "kernels/row_major.h"
#include "kernels/thread_pool.h"

namespace mx = mlx::core;

namespace mlxgp::kernels {

// No FMA contraction: the fallback rounds every square and every sum.
#pragma GCC optimize("fp-contract=off")

namespace {

#if defined(__x86_64__)
#define MLXGP_NORM_AVX2 __attribute__((target("avx2")))
#else
#define MLXGP_NORM_AVX2
#endif

// Rows r0 .. r0 + R - 1's sums of squares, each in element order (the fallback's rounding), R rows at a
// time: one row's sum is a chain of dependent adds (a prompt's norm ran at 6 GB/s, 5% of a Q4_0 int8
// prefill), R chains interleave.
template <int R>
MLXGP_NORM_AVX2 void square_sums(const float* x, int D, int r0, float* sums) {
  float s[R] = {};
  const float* xr = x + static_cast<size_t>(r0) * D;
  for (int i = 0; i < D; ++i)
    for (int r = 0; r < R; ++r) {
      const float v = xr[static_cast<size_t>(r) * D + i];
      const float sq = v * v;
      s[r] += sq;
    }
  for (int r = 0; r < R; ++r) sums[r] = s[r];
}

MLXGP_NORM_AVX2 void norm_rows(const float* x, const float* w, float* out, int D, float eps, int r0, int r1) {
  const float inv_d = static_cast<float>(1.0 / D);
  constexpr int kRows = 8;
  for (int b = r0; b < r1; b += kRows) {
    const int n = std::min(kRows, r1 - b);
    float sums[kRows];
    if (n == kRows) square_sums<kRows>(x, D, b, sums);
    else
      for (int j = 0; j < n; ++j) square_sums<1>(x, D, b + j, sums + j);
    for (int j = 0; j < n; ++j) {
      const float* xr = x + static_cast<size_t>(b + j) * D;
      float* o = out + static_cast<size_t>(b + j) * D;
      const float scale = 1.0f / std::sqrt(sums[j] * inv_d + eps);
      int i = 0;
#if defined(__x86_64__)
      const __m256 sv = _mm256_set1_ps(scale);
      for (; i + 8 <= D; i += 8)
        _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), sv), _mm256_loadu_ps(w + i)));
#endif
      for (; i < D; ++i) o[i] = (xr[i] * scale) * w[i];
    }
  }
}

// The same function in MLX ops, for the gradient.
mx::array rms_norm_ops(const mx::array& x, const mx::array& w, float eps) {
  auto scale = mx::rsqrt(mx::add(mx::mean(mx::square(x), -1, true), mx::array(eps)));
  return mx::multiply(mx::multiply(x, scale), w);
}

class CpuRmsNorm : public mx::UnaryPrimitive {
 public:
  CpuRmsNorm(mx::Stream s, float eps) : mx::UnaryPrimitive(s), eps_(eps) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      return [x = mx::array::unsafe_weak_copy(in[0]), w = mx::array::unsafe_weak_copy(in[1]),
              o = mx::array::unsafe_weak_copy(out), eps = eps_]() mutable {
        RowMajor<float> xs(x), ws(w);
        const int D = x.shape(-1), rows = static_cast<int>(x.size() / D);
        float* po = o.data<float>();
        // Work per row counted as 4 x D: a prompt's rows split across the threads.
        parallel_rows(rows, 4 * D, [&](int r0, int r1) { rms_norm_rows(xs.ptr, ws.ptr, po, D, eps, r0, r1); });
      };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] the custom rms_norm runs on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuRmsNorm"; }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    const float eps = eps_;
    auto f = [eps](const std::vector<mx::array>& in) { return std::vector{rms_norm_ops(in[0], in[1], eps)}; };
    auto grads = mx::vjp(f, primals, cotangents).second;
    std::vector<mx::array> out;
    for (int arg : argnums) out.push_back(grads[arg]);
    return out;
  }
  bool is_equivalent(const mx::Primitive& other) const override {
    const auto* o = dynamic_cast<const CpuRmsNorm*>(&other);
    return o && o->eps_ == eps_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override { return {in[0].shape()}; }

 private:
  float eps_;
};

}  // namespace

void rms_norm_rows(const float* x, const float* w, float* out, int D, float eps, int r0, int r1) {
  norm_rows(x, w, out, D, eps, r0, r1);
}

bool rms_norm_supported(const mx::array& x, const mx::array& w) {
  return available() && machine_isa() != Isa::portable && mx::default_device() == mx::Device::cpu &&
         x.dtype() == mx::float32 && w.dtype() == mx::float32 && x.ndim() >= 1 && w.ndim() == 1 &&
         x.shape(-1) == w.shape(0) && x.shape(-1) > 0 && x.size() > 0;
}

mx::array rms_norm(const mx::array& x, const mx::array& w, float eps) {
  if (!rms_norm_supported(x, w)) return mx::fast::rms_norm(x, w, eps);
  return mx::array(x.shape(), mx::float32, std::make_shared<CpuRmsNorm>(mx::default_stream(mx::Device::cpu), eps),
                   {x, w});
}

}  // namespace mlxgp::kernels
