// mlxgp::kernels::swiglu: silu(gate) * up for the llama-family MLP as one CPU primitive. MLX's CPU
// backend evaluates sigmoid with a scalar exp per element and runs the two multiplies as separate
// passes; over a prefill's [T, intermediate] activations that costs more than the down projection's
// matmul. Here: one pass, an AVX2 exp, all threads.
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
#include "kernels/qmm_cpu.h"
#include "kernels/row_major.h"
#include "kernels/simd_exp.h"
#include "kernels/thread_pool.h"
#include "kernels/kernels.h"

namespace mx = mlx::core;

namespace mlxgp::kernels {

namespace {

MLXGP_SIMD_EXP_AVX2 void swiglu_avx2(const float* g, const float* u, float* out, size_t i0, size_t i1) {
  size_t i = i0;
#if defined(__x86_64__)
  const __m256 one = _mm256_set1_ps(1.0f);
  for (; i + 8 <= i1; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 e = simd::exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));  // e^-g
    const __m256 silu = _mm256_div_ps(gv, _mm256_add_ps(one, e));         // g * sigmoid(g)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
  }
#endif
  for (; i < i1; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void run_swiglu(const mx::array& gate, const mx::array& up, mx::array& out) {
  RowMajor<float> g(gate), u(up);
  swiglu_flat(g.ptr, u.ptr, out.data<float>(), gate.size());
}

class CpuSwiGlu : public mx::UnaryPrimitive {
 public:
  explicit CpuSwiGlu(mx::Stream s) : mx::UnaryPrimitive(s) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      return [g = mx::array::unsafe_weak_copy(in[0]), u = mx::array::unsafe_weak_copy(in[1]),
              o = mx::array::unsafe_weak_copy(out)]() mutable { run_swiglu(g, u, o); };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] the custom swiglu runs on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuSwiGlu"; }

  // y = g s(g) u: dy/du = g s(g); dy/dg = u s(g) (1 + g (1 - s(g))).
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    const auto &g = primals[0], &u = primals[1], &c = cotangents[0];
    auto s = mx::sigmoid(g);
    std::vector<mx::array> out;
    for (int arg : argnums) {
      if (arg == 1) {
        out.push_back(mx::multiply(c, mx::multiply(g, s)));
      } else {
        auto d = mx::multiply(s, mx::add(mx::array(1.0f), mx::multiply(g, mx::subtract(mx::array(1.0f), s))));
        out.push_back(mx::multiply(c, mx::multiply(u, d)));
      }
    }
    return out;
  }
  bool is_equivalent(const mx::Primitive& other) const override {
    return dynamic_cast<const CpuSwiGlu*>(&other) != nullptr;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override { return {in[0].shape()}; }
};

}  // namespace

void swiglu_flat(const float* g, const float* u, float* out, size_t n) {
  constexpr int kBlock = 4096;  // elements per task
  const int blocks = static_cast<int>((n + kBlock - 1) / kBlock);
  parallel_rows(blocks, kBlock, [&](int b0, int b1) {
    swiglu_avx2(g, u, out, static_cast<size_t>(b0) * kBlock, std::min(n, static_cast<size_t>(b1) * kBlock));
  });
}

bool swiglu_supported(const mx::array& gate, const mx::array& up) {
  return available() && machine_isa() != Isa::portable && mx::default_device() == mx::Device::cpu &&
         gate.dtype() == mx::float32 && up.dtype() == mx::float32 && gate.shape() == up.shape();
}

mx::array swiglu(const mx::array& gate, const mx::array& up) {
  if (!swiglu_supported(gate, up)) return mx::multiply(mx::multiply(gate, mx::sigmoid(gate)), up);
  return mx::array(gate.shape(), mx::float32, std::make_shared<CpuSwiGlu>(mx::default_stream(mx::Device::cpu)),
                   {gate, up});
}

}  // namespace mlxgp::kernels
