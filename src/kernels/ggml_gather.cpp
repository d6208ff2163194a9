// Stacked expert weights in llama.cpp block formats ([experts, out, row bytes] as the GGUF file stores
// ffn_*_exps), multiplied as MLX's gather_mm multiplies float experts: each (token, chosen expert) pair
// reads only that expert's rows. Pairs are grouped by expert so one pass over an expert's blocks serves
// every token routed to it (up to 8 rows per decode in the fused kernel), which is what makes Q6_K /
// Q3_K / Q2_K experts (real Q4_K_M MoE files) usable without widening them.
#include <memory>
#include <numeric>
#include <stdexcept>
#include <vector>

#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "kernels/aligned.h"
#include "kernels/cpu_task.h"
#include "kernels/expert_order.h"
#include "kernels/ggml_product.h"
#include "kernels/kernels.h"
#include "kernels/row_major.h"

namespace mx = mlx::core;

namespace mlxgp::kernels {

namespace {

// x [P, M, K] float32, idx [P] uint32, w [E, N, row bytes] -> out [P, M, N].
void run_ggml_gather(const mx::array& x, const mx::array& idx, const mx::array& w, mx::array& out, uint32_t type,
                     bool int8) {
  RowMajor<float> xr(x);
  RowMajor<uint32_t> ir(idx);
  RowMajor<uint8_t> wr(w);
  const int P = x.shape(0), M = x.shape(1), K = x.shape(2), E = w.shape(0), N = w.shape(1);
  const size_t row_bytes = w.shape(2), expert_bytes = static_cast<size_t>(N) * row_bytes;
  float* o = out.data<float>();
  if (P == 0 || M == 0 || N == 0) return;
  const ExpertOrder eo = order_by_expert(ir.ptr, P, E);
  for (int p : eo.unrouted)
    std::fill(o + static_cast<size_t>(p) * M * N, o + static_cast<size_t>(p + 1) * M * N, 0.0f);  // never routed
  AlignedVector<float> xs, ys;
  for (int e = 0; e < E; ++e) {
    const int n = eo.count(e);
    if (n == 0) continue;
    const size_t rows = static_cast<size_t>(n) * M;
    xs.resize(rows * K);
    ys.resize(rows * N);
    for (int i = 0; i < n; ++i) {
      const int p = eo.pair(e, i);
      std::copy(xr.ptr + static_cast<size_t>(p) * M * K, xr.ptr + static_cast<size_t>(p + 1) * M * K,
                xs.data() + static_cast<size_t>(i) * M * K);
    }
    ggml_product(type, xs.data(), static_cast<int>(rows), K, wr.ptr + e * expert_bytes, N, row_bytes, ys.data(), int8);
    for (int i = 0; i < n; ++i) {
      const int p = eo.pair(e, i);
      std::copy(ys.data() + static_cast<size_t>(i) * M * N, ys.data() + static_cast<size_t>(i + 1) * M * N,
                o + static_cast<size_t>(p) * M * N);
    }
  }
}

mx::array dequantized_gather(const mx::array& x, const mx::array& w, const mx::array& indices, uint32_t type, int K) {
  auto wd = ggml_dequantize(w, type, K);  // [E, N, K]
  if (x.dtype() != mx::float32) wd = mx::astype(wd, x.dtype());
  return mx::gather_mm(x, mx::swapaxes(wd, -1, -2), std::nullopt, indices);
}

class CpuGgmlGatherMatmul : public mx::UnaryPrimitive {
 public:
  CpuGgmlGatherMatmul(mx::Stream s, uint32_t type, bool int8) : mx::UnaryPrimitive(s), type_(type), int8_(int8) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      return [x = mx::array::unsafe_weak_copy(in[0]), i = mx::array::unsafe_weak_copy(in[1]),
              w = mx::array::unsafe_weak_copy(in[2]), o = mx::array::unsafe_weak_copy(out), t = type_,
              q = int8_]() mutable { run_ggml_gather(x, i, w, o, t, q); };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] the llama.cpp block expert matmul runs on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuGgmlGatherMatmul"; }

  // dx[p] = g[p] W[idx[p]] with the experts dequantized; the stored blocks are frozen.
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    std::vector<mx::array> out;
    for (int arg : argnums) {
      if (arg != 0)
        throw std::invalid_argument("[kernels] quantized expert weights have no gradient (they are frozen)");
      auto wd = ggml_dequantize(primals[2], type_, primals[0].shape(-1));  // [E, N, K]
      out.push_back(mx::gather_mm(cotangents[0], mx::astype(wd, cotangents[0].dtype()), std::nullopt, primals[1]));
    }
    return out;
  }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const CpuGgmlGatherMatmul*>(&other);
    return o && o->type_ == type_ && o->int8_ == int8_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override {
    return {{in[0].shape(0), in[0].shape(1), in[2].shape(1)}};
  }

 private:
  uint32_t type_;
  bool int8_;
};

}  // namespace

mx::array ggml_gather_matmul(const mx::array& x, const mx::array& w, const mx::array& indices, uint32_t type,
                             bool int8_activations) {
  const int K = x.ndim() ? x.shape(-1) : 0;
  check_ggml_blocks(w, type, K);
  check_int8_activations(type, int8_activations);
  if (w.ndim() != 3 || x.ndim() < 2)
    throw std::invalid_argument("[kernels] llama.cpp block expert matmul needs x [..., M, K] and w [E, N, bytes]");
  if (!mx::issubdtype(indices.dtype(), mx::integer))
    throw std::invalid_argument("[kernels] expert indices must be integers");
  if (mx::default_device() != mx::Device::cpu) return dequantized_gather(x, w, indices, type, K);
  // gather_mm's broadcasting: x's batch dimensions against the indices'.
  const mx::Shape xb(x.shape().begin(), x.shape().end() - 2);
  const mx::Shape batch = mx::broadcast_shapes(xb, indices.shape());
  const int M = x.shape(-2), N = w.shape(1);
  const int P = static_cast<int>(std::accumulate(batch.begin(), batch.end(), int64_t{1}, std::multiplies<>()));
  mx::Shape xs = batch;
  xs.push_back(M);
  xs.push_back(K);
  auto xf = mx::reshape(mx::broadcast_to(x.dtype() == mx::float32 ? x : mx::astype(x, mx::float32), xs), {P, M, K});
  auto idx = mx::reshape(mx::broadcast_to(mx::astype(indices, mx::uint32), batch), {P});
  auto y = mx::array({P, M, N}, mx::float32,
                     std::make_shared<CpuGgmlGatherMatmul>(mx::default_stream(mx::Device::cpu), type, int8_activations),
                     {xf, idx, w});
  mx::Shape ys = batch;
  ys.push_back(M);
  ys.push_back(N);
  y = mx::reshape(y, ys);
  return x.dtype() == mx::float32 ? y : mx::astype(y, x.dtype());
}

}  // namespace mlxgp::kernels
