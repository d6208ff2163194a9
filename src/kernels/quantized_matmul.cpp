// mlxgp::kernels::quantized_matmul: an MLX custom primitive whose eval_cpu runs the SIMD row
// kernels of qmm_cpu.cpp over a thread pool. MLX's own CPU QuantizedMatmul is a generic
// single-threaded loop, which dominates decode time on CPU.
#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <stdexcept>
#include <vector>

#include <mlx/allocator.h>
#include <mlx/backend/cpu/encoder.h>
#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "kernels/aligned.h"
#include "kernels/cpu_task.h"
#include "kernels/qmm_cpu.h"
#include "kernels/packed_weight.h"
#include "kernels/row_major.h"
#include "kernels/thread_pool.h"
#include "kernels/kernels.h"

namespace mx = mlx::core;

namespace mlxgp::kernels {

namespace {

void run_qmm(const mx::array& x, const mx::array& w, const mx::array& scales, const std::optional<mx::array>& biases,
             mx::array& out, int group_size, int bits, const std::string& mode) {
  RowMajor<float> xr(x);
  QmmArgs a;
  PackedWeight packed(w, scales, biases, group_size, bits, mode, a);
  a.M = static_cast<int>(x.size() / a.K);
  a.x = xr.ptr;
  a.out = out.data<float>();
  if (a.M == 0 || a.N == 0) return;

  const Isa isa = detect_isa();
  AlignedVector<float> xp(prepared_x_floats(a));
  prepare_x(a, isa, xp.data());
  parallel_rows(a.N, a.K * a.M, [&](int n0, int n1) { qmm_rows(a, xp.data(), n0, n1, isa); });
}

void run_dequantize(const mx::array& w, const mx::array& scales, const std::optional<mx::array>& biases, mx::array& out,
                    int group_size, int bits, const std::string& mode) {
  QmmArgs a;
  PackedWeight packed(w, scales, biases, group_size, bits, mode, a);
  const Isa isa = detect_isa();
  float* o = out.data<float>();
  parallel_rows(a.N, a.K, [&](int n0, int n1) { dequantize_rows(a, o, n0, n1, isa); });
}

// The packed weight as float32 [N, K], for prefill-sized products (see quantized_matmul).
// Inputs {w, scales, biases} (affine) or {w, scales} (microscaling).
std::optional<mx::array> biases_of(const std::vector<mx::array>& in, size_t at) {
  if (in.size() <= at) return std::nullopt;
  return mx::array::unsafe_weak_copy(in[at]);
}

class CpuAffineDequantize : public mx::UnaryPrimitive {
 public:
  CpuAffineDequantize(mx::Stream s, int group_size, int bits, std::string mode)
      : mx::UnaryPrimitive(s), group_size_(group_size), bits_(bits), mode_(std::move(mode)) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      return [w = mx::array::unsafe_weak_copy(in[0]), s = mx::array::unsafe_weak_copy(in[1]), b = biases_of(in, 2),
              o = mx::array::unsafe_weak_copy(out), gs = group_size_, bits = bits_,
              mode = mode_]() mutable { run_dequantize(w, s, b, o, gs, bits, mode); };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] the custom dequantize runs on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuAffineDequantize"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const CpuAffineDequantize*>(&other);
    return o && o->group_size_ == group_size_ && o->bits_ == bits_ && o->mode_ == mode_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override {
    return {{in[0].shape(0), static_cast<int>(in[0].shape(1) * 32 / bits_)}};
  }

 private:
  int group_size_, bits_;
  std::string mode_;
};

class CpuQuantizedMatmul : public mx::UnaryPrimitive {
 public:
  CpuQuantizedMatmul(mx::Stream s, int group_size, int bits, std::string mode)
      : mx::UnaryPrimitive(s), group_size_(group_size), bits_(bits), mode_(std::move(mode)) {}

  // Inputs {x, w, scales, biases} (affine) or {x, w, scales} (microscaling).
  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      return [x = mx::array::unsafe_weak_copy(in[0]), w = mx::array::unsafe_weak_copy(in[1]),
              s = mx::array::unsafe_weak_copy(in[2]), b = biases_of(in, 3), o = mx::array::unsafe_weak_copy(out),
              gs = group_size_, bits = bits_, mode = mode_]() mutable { run_qmm(x, w, s, b, o, gs, bits, mode); };
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] the custom quantized matmul runs on the CPU only");
  }

  const char* name() const override { return "MlxgpCpuQuantizedMatmul"; }

  // Training (LoRA on a quantized base, soft prompts) differentiates through the frozen quantized
  // weights with respect to x only: dx = g W, W dequantized on the fly by MLX's own kernel.
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    std::vector<mx::array> out;
    for (int arg : argnums) {
      if (arg != 0) throw std::invalid_argument("[kernels] quantized weights have no gradient (they are frozen)");
      const auto& g = cotangents[0];
      if (primals.size() < 4) {  // microscaling: uint8 scales as they are
        out.push_back(mx::quantized_matmul(g, primals[1], primals[2], std::nullopt, false, group_size_, bits_, mode_));
        continue;
      }
      auto sc = mx::astype(primals[2], g.dtype()), bi = mx::astype(primals[3], g.dtype());
      out.push_back(mx::quantized_matmul(g, primals[1], sc, bi, false, group_size_, bits_));
    }
    return out;
  }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const CpuQuantizedMatmul*>(&other);
    return o && o->group_size_ == group_size_ && o->bits_ == bits_ && o->mode_ == mode_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override {
    auto s = in[0].shape();
    s.back() = in[1].shape(0);
    return {s};
  }

 private:
  int group_size_, bits_;
  std::string mode_;
};

}  // namespace

bool quantized_matmul_supported(const mx::array& x, const mx::array& w, const mx::array& scales,
                                const std::optional<mx::array>& biases, int group_size, int bits,
                                const std::string& mode) {
  if (!available() || mx::default_device() != mx::Device::cpu) return false;
  if (!packed_format_supported(scales, biases, group_size, bits, mode)) return false;
  if (x.dtype() != mx::float32 || x.ndim() < 1 || w.dtype() != mx::uint32 || w.ndim() != 2) return false;
  const int K = x.shape(-1), N = w.shape(0);
  if (K == 0 || K % group_size != 0 || w.shape(1) * 32 != K * bits) return false;
  if (K % packed_k_multiple(mode) != 0) return false;
  if (scales.shape() != mx::Shape{N, K / group_size} || (biases && biases->shape() != scales.shape())) return false;
  return true;
}

bool quantized_matmul_supported(const mx::array& x, const mx::array& w, const mx::array& scales,
                                const mx::array& biases, int group_size, int bits) {
  return quantized_matmul_supported(x, w, scales, std::optional<mx::array>(biases), group_size, bits, "affine");
}

mx::array quantized_matmul(const mx::array& x, const mx::array& w, const mx::array& scales,
                           const std::optional<mx::array>& biases, int group_size, int bits, const std::string& mode) {
  if (!quantized_matmul_supported(x, w, scales, biases, group_size, bits, mode))
    return mx::quantized_matmul(x, w, scales, biases, true, group_size, bits, mode);
  std::vector<mx::array> packed = {w, scales};
  if (biases) packed.push_back(*biases);
  // Prefill-sized x: the row kernel reaches about a third of the FMA peak, the dense tiles (linear)
  // far more, so dequantizing the weight once (N x K, cheap next to M x N x K) and multiplying wins from
  // about 100 rows (2-core AVX-512, with BLAS sgemm then: 512 x 576 x 1536 in 5.7 ms against 8.7 ms). Not under a
  // transform: training keeps the primitive whose vjp never materialises the weight.
  const int64_t rows = static_cast<int64_t>(x.size() / x.shape(-1));
  if (rows >= kQmmGemmRows && detect_isa() == Isa::avx512 && !x.is_tracer()) {
    auto wd = mx::array(
        {w.shape(0), x.shape(-1)}, mx::float32,
        std::make_shared<CpuAffineDequantize>(mx::default_stream(mx::Device::cpu), group_size, bits, mode), packed);
    return linear(x, wd);
  }
  auto shape = x.shape();
  shape.back() = w.shape(0);
  packed.insert(packed.begin(), x);
  return mx::array(shape, mx::float32,
                   std::make_shared<CpuQuantizedMatmul>(mx::default_stream(mx::Device::cpu), group_size, bits, mode),
                   packed);
}

mx::array quantized_matmul(const mx::array& x, const mx::array& w, const mx::array& scales, const mx::array& biases,
                           int group_size, int bits) {
  return quantized_matmul(x, w, scales, std::optional<mx::array>(biases), group_size, bits, "affine");
}

bool available() {
  // The portable path only exists to test the SIMD ones against; on CPUs without AVX2 (e.g. ARM,
  // where MLX has its own SIMD / Accelerate paths) MLX's ops are used.
  return !kernels_disabled() && machine_isa() != Isa::portable;
}

void set_num_threads(int n) { set_pool_threads(n); }
int num_threads() { return pool_threads(); }

const char* cpu_isa() {
  switch (detect_isa()) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    default:
      return "portable";
  }
}

bool set_cpu_isa_cap(const std::string& name) {
  if (name == "portable") cap_isa(Isa::portable);
  else if (name == "avx2") cap_isa(Isa::avx2);
  else if (name == "avx512") cap_isa(Isa::avx512);
  else return false;
  return true;
}

}  // namespace mlxgp::kernels
