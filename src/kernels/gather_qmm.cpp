// MLX-quantized stacked experts (affine 4 / 5 / 8 bits, mxfp4, nvfp4: w [E, N, K * bits / 32], scales [E, N, K / g])
// multiplied as mx::gather_qmm multiplies them, on the row kernels of qmm_cpu.cpp. MLX's CPU gather_qmm is a
// generic loop (about 1 GB/s of weights on the 2-core Xeon); here the (token, expert) pairs are grouped by expert
// (ggml_gather.cpp's scheme), so one pass over an expert's rows serves every token routed to it, and each pass
// runs the SIMD kernel over the thread pool.
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "kernels/aligned.h"
#include "kernels/cpu_task.h"
#include "kernels/expert_order.h"
#include "kernels/kernels.h"
#include "kernels/packed_weight.h"
#include "kernels/qmm_cpu.h"
#include "kernels/row_major.h"
#include "kernels/thread_pool.h"

namespace mx = mlx::core;

namespace mlxgp::kernels {

namespace {

// x [P, K] float32, idx [P] uint32 -> out [P, N]: row p is x[p] times expert idx[p]'s weight.
void run_gather_qmm(const mx::array& x, const mx::array& idx, const mx::array& w, const mx::array& scales,
                    const std::optional<mx::array>& biases, mx::array& out, int group_size, int bits,
                    const std::string& mode) {
  RowMajor<float> xr(x);
  RowMajor<uint32_t> ir(idx);
  QmmArgs a;
  PackedWeight packed(w, scales, biases, group_size, bits, mode, a);
  const int P = x.shape(0), E = w.shape(0), N = a.N, K = a.K;
  float* o = out.data<float>();
  if (P == 0 || N == 0) return;
  const size_t words = static_cast<size_t>(N) * K * bits / 32;
  const size_t scale_stride = static_cast<size_t>(N) * (K / group_size) * scale_bytes(a.scale_type);
  const ExpertOrder eo = order_by_expert(ir.ptr, P, E);
  for (int p : eo.unrouted) std::fill(o + static_cast<size_t>(p) * N, o + static_cast<size_t>(p + 1) * N, 0.0f);
  const Isa isa = detect_isa();
  AlignedVector<float> xs, xp, ys;
  for (int e = 0; e < E; ++e) {
    const int n = eo.count(e);
    if (n == 0) continue;
    QmmArgs ae = a;
    ae.w = a.w + e * words;
    ae.scales = static_cast<const uint8_t*>(a.scales) + e * scale_stride;
    if (a.biases) ae.biases = static_cast<const uint8_t*>(a.biases) + e * scale_stride;
    ae.M = n;
    xs.resize(static_cast<size_t>(n) * K);
    ys.resize(static_cast<size_t>(n) * N);
    for (int i = 0; i < n; ++i) {
      const int p = eo.pair(e, i);
      std::copy(xr.ptr + static_cast<size_t>(p) * K, xr.ptr + static_cast<size_t>(p + 1) * K,
                xs.data() + static_cast<size_t>(i) * K);
    }
    ae.x = xs.data();
    ae.out = ys.data();
    xp.resize(prepared_x_floats(ae));
    prepare_x(ae, isa, xp.data());
    parallel_rows(N, K * n, [&](int n0, int n1) { qmm_rows(ae, xp.data(), n0, n1, isa); });
    for (int i = 0; i < n; ++i)
      std::copy(ys.data() + static_cast<size_t>(i) * N, ys.data() + static_cast<size_t>(i + 1) * N,
                o + static_cast<size_t>(eo.pair(e, i)) * N);
  }
}

// Inputs {x, idx, w, scales[, biases]}.
class CpuGatherQmm : public mx::UnaryPrimitive {
 public:
  CpuGatherQmm(mx::Stream s, int group_size, int bits, std::string mode)
      : mx::UnaryPrimitive(s), group_size_(group_size), bits_(bits), mode_(std::move(mode)) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      std::optional<mx::array> b;
      if (in.size() > 4) b = mx::array::unsafe_weak_copy(in[4]);
      return [x = mx::array::unsafe_weak_copy(in[0]), i = mx::array::unsafe_weak_copy(in[1]),
              w = mx::array::unsafe_weak_copy(in[2]), s = mx::array::unsafe_weak_copy(in[3]), b,
              o = mx::array::unsafe_weak_copy(out), gs = group_size_, bits = bits_,
              mode = mode_]() mutable { run_gather_qmm(x, i, w, s, b, o, gs, bits, mode); };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] the quantized expert matmul runs on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuGatherQmm"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const CpuGatherQmm*>(&other);
    return o && o->group_size_ == group_size_ && o->bits_ == bits_ && o->mode_ == mode_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override {
    return {{in[0].shape(0), in[2].shape(1)}};
  }

 private:
  int group_size_, bits_;
  std::string mode_;
};

}  // namespace

bool gather_quantized_matmul_supported(const mx::array& x, const mx::array& w, const mx::array& scales,
                                       const std::optional<mx::array>& biases, const mx::array& indices, int group_size,
                                       int bits, const std::string& mode) {
  if (!available() || mx::default_device() != mx::Device::cpu) return false;
  // Under a transform (training through frozen experts) MLX's op, whose vjp exists.
  if (x.is_tracer() || x.dtype() != mx::float32 || x.ndim() < 2 || x.shape(-2) != 1) return false;
  if (!mx::issubdtype(indices.dtype(), mx::integer)) return false;
  if (!packed_format_supported(scales, biases, group_size, bits, mode)) return false;
  const int K = x.shape(-1);
  if (w.dtype() != mx::uint32 || w.ndim() != 3 || K == 0 || K % group_size != 0 || K % packed_k_multiple(mode) != 0 ||
      static_cast<int64_t>(w.shape(2)) * 32 != static_cast<int64_t>(K) * bits)
    return false;
  const mx::Shape want{w.shape(0), w.shape(1), K / group_size};
  if (scales.shape() != want || (biases && biases->shape() != want)) return false;
  // gather_qmm's broadcasting: x's batch dimensions against the indices'.
  const mx::Shape xb(x.shape().begin(), x.shape().end() - 2);
  try {
    return mx::broadcast_shapes(xb, indices.shape()) == indices.shape();
  } catch (const std::invalid_argument&) {
    return false;
  }
}

mx::array gather_quantized_matmul(const mx::array& x, const mx::array& w, const mx::array& scales,
                                  const std::optional<mx::array>& biases, const mx::array& indices, int group_size,
                                  int bits, const std::string& mode) {
  if (!gather_quantized_matmul_supported(x, w, scales, biases, indices, group_size, bits, mode)) {
    // MLX's gather_qmm wants affine scales and biases in x's dtype (the loader may keep them 16-bit).
    auto like_x = [&](const mx::array& a) {
      return mode != "affine" || a.dtype() == x.dtype() ? a : mx::astype(a, x.dtype());
    };
    std::optional<mx::array> b;
    if (biases) b = like_x(*biases);
    return mx::gather_qmm(x, w, like_x(scales), b, std::nullopt, indices, true, group_size, bits, mode);
  }
  const mx::Shape& batch = indices.shape();
  const int K = x.shape(-1), N = w.shape(1);
  const int P = static_cast<int>(std::accumulate(batch.begin(), batch.end(), int64_t{1}, std::multiplies<>()));
  mx::Shape xs = batch;
  xs.push_back(1);
  xs.push_back(K);
  std::vector<mx::array> in = {mx::reshape(mx::broadcast_to(x, xs), {P, K}),
                               mx::reshape(mx::astype(indices, mx::uint32), {P}), w, scales};
  if (biases) in.push_back(*biases);
  auto y = mx::array({P, N}, mx::float32,
                     std::make_shared<CpuGatherQmm>(mx::default_stream(mx::Device::cpu), group_size, bits, mode), in);
  mx::Shape ys = batch;
  ys.push_back(1);
  ys.push_back(N);
  return mx::reshape(y, ys);
}

}  // namespace mlxgp::kernels
