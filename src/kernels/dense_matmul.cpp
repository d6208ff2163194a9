// mlxgp::kernels::linear: x @ W^T for float32 x as an MLX custom primitive. With M of 1..16 rows
// (kLinearMaxRows), BLAS sgemm packs the whole weight matrix for a product that only needs one streaming
// pass over it; a per-row dot product kernel runs at memory bandwidth instead. Larger M (prefill) runs
// dense_gemm.cpp's tiles.
#include <memory>
#include <stdexcept>
#include <vector>

#include <mlx/allocator.h>
#include <mlx/backend/cpu/encoder.h>
#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "kernels/aligned.h"
#include "kernels/cpu_task.h"
#include "kernels/dense_cpu.h"
#include "kernels/row_major.h"
#include "kernels/thread_pool.h"
#include "kernels/kernels.h"

namespace mx = mlx::core;

namespace mlxgp::kernels {

namespace {

void run_dense(const mx::array& x, const mx::array& w, mx::array& out) {
  RowMajor<float> xr(x), wr(w);
  DenseArgs a;
  a.K = x.shape(-1);
  a.M = static_cast<int>(x.size() / a.K);
  a.N = w.shape(0);
  a.w = wr.ptr;
  a.out = out.data<float>();
  if (a.M == 0 || a.N == 0) return;
  const Isa isa = detect_isa();
  if (a.M > kLinearMaxRows) {
    a.x = xr.ptr;
    dense_gemm(a, isa);
    return;
  }
  AlignedVector<float> xa;
  a.x = aligned_copy(xr.ptr, static_cast<size_t>(a.M) * a.K, xa);
  parallel_rows(a.N, a.K * a.M, [&](int n0, int n1) { dense_rows(a, n0, n1, isa); });
}

class CpuDenseLinear : public mx::UnaryPrimitive {
 public:
  explicit CpuDenseLinear(mx::Stream s) : mx::UnaryPrimitive(s) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      return [x = mx::array::unsafe_weak_copy(in[0]), w = mx::array::unsafe_weak_copy(in[1]),
              o = mx::array::unsafe_weak_copy(out)]() mutable { run_dense(x, w, o); };
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] the custom dense linear runs on the CPU only");
  }

  const char* name() const override { return "MlxgpCpuDenseLinear"; }

  // y = x W^T: dx = g W, dW = g^T x over the flattened leading dimensions.
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    const auto &x = primals[0], &w = primals[1], &g = cotangents[0];
    std::vector<mx::array> out;
    for (int arg : argnums) {
      if (arg == 0) {
        out.push_back(mx::matmul(g, w));
      } else {
        auto g2 = mx::reshape(g, {-1, g.shape(-1)}), x2 = mx::reshape(x, {-1, x.shape(-1)});
        out.push_back(mx::matmul(mx::transpose(g2), x2));
      }
    }
    return out;
  }

  bool is_equivalent(const mx::Primitive& other) const override {
    return dynamic_cast<const CpuDenseLinear*>(&other) != nullptr;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override {
    auto s = in[0].shape();
    s.back() = in[1].shape(0);
    return {s};
  }
};

}  // namespace

bool linear_supported(const mx::array& x, const mx::array& w) {
  if (!available() || mx::default_device() != mx::Device::cpu) return false;
  if (x.dtype() != mx::float32 || w.dtype() != mx::float32 || x.ndim() < 1 || w.ndim() != 2) return false;
  const int K = x.shape(-1);
  return K > 0 && w.shape(1) == K;
}

mx::array linear(const mx::array& x, const mx::array& w) {
  // Under a transformation (training's value_and_grad) prefill-sized products stay MLX's matmul, as
  // attention keeps its blocked route there: a training step then equals MLX's own step on the same
  // model (an mlx-lm model's AdamW step in tests/python, to 1e-5) instead of differing by the tiles'
  // summation order.
  const bool traced = x.is_tracer() || w.is_tracer();
  if (!linear_supported(x, w) || (traced && x.size() / x.shape(-1) > kLinearMaxRows)) {
    // MLX's CPU backend multiplies 16-bit floats in a plain loop, far slower than the BLAS sgemm it
    // uses for float32; 16-bit products on the CPU therefore run as float32 (the fp32 accumulation a
    // bf16 GEMM does anyway) and round the result back.
    const bool half = x.dtype() == mx::bfloat16 || x.dtype() == mx::float16;
    if (half && w.dtype() == x.dtype() && available() && mx::default_device() == mx::Device::cpu)
      return mx::astype(linear(mx::astype(x, mx::float32), mx::astype(w, mx::float32)), x.dtype());
    return mx::matmul(x, mx::transpose(w));
  }
  auto shape = x.shape();
  shape.back() = w.shape(0);
  return mx::array(shape, mx::float32, std::make_shared<CpuDenseLinear>(mx::default_stream(mx::Device::cpu)), {x, w});
}

}  // namespace mlxgp::kernels
