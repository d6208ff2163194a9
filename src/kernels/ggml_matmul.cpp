// llama.cpp block formats that MLX's affine quantization cannot represent exactly (Q2_K, Q3_K, Q6_K:
// 16-value sub-blocks with their own scales) kept as stored and multiplied by two CPU primitives:
// ggml_matmul dequantizes a tile of weight rows into an fp32 buffer (ggml-quants.c's arithmetic, see
// ggml_blocks.cpp) and runs the dense row kernel over it, so weights stay at the file's size; and
// ggml_dequantize expands rows (embedding lookups, prefill, other devices).
#include <algorithm>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#include <mlx/allocator.h>
#include <mlx/backend/cpu/encoder.h>
#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "kernels/aligned.h"
#include "kernels/cpu_task.h"
#include "kernels/dense_cpu.h"
#include "kernels/fused_rows.h"
#include "kernels/ggml_blocks.h"
#include "kernels/ggml_product.h"
#include "kernels/ggml_q8.h"
#include "kernels/ggml_rows.h"
#include "kernels/row_major.h"
#include "kernels/thread_pool.h"
#include "kernels/kernels.h"

namespace mx = mlx::core;

namespace mlxgp::kernels {

namespace {

constexpr int kTileRows = 16;  // weight rows dequantized at once (16 x K floats stay in L1/L2)

void run_ggml_dequantize(const mx::array& w, mx::array& out, uint32_t type) {
  RowMajor<uint8_t> wr(w);
  const int rows = static_cast<int>(w.size() / w.shape(-1)), K = out.shape(-1);
  const size_t row_bytes = w.shape(-1);
  float* o = out.data<float>();
  if (ggml_simd_supported(type)) {
    parallel_rows(rows, K, [&](int r0, int r1) { ggml_dequantize_rows(type, wr.ptr, row_bytes, K, o, r0, r1); });
    return;
  }
  parallel_rows(rows, K, [&](int r0, int r1) {
    for (int r = r0; r < r1; ++r) dequantize_ggml_row(type, wr.ptr + r * row_bytes, o + static_cast<size_t>(r) * K, K);
  });
}

// What one CpuGgmlMatmul node runs around its products (see GgmlFusion in kernels.h).
struct Fused {
  bool norm = false, swiglu = false, residual = false;
  float eps = 0;
  std::optional<GgmlRope> rope;
  bool operator==(const Fused&) const = default;
};

// The unfused form of one rotated output: kernels::rope over its head split, back to [..., heads x head_dim].
mx::array rope_heads(const mx::array& y, const GgmlRope& r) {
  const int B = y.shape(0), T = y.shape(1), heads = y.shape(2) / r.head_dim;
  auto h = mx::transpose(mx::reshape(y, {B, T, heads, r.head_dim}), {0, 2, 1, 3});
  h = r.row_offsets.empty() ? rope(h, r.dims, r.base, r.scale, r.offset)
                            : rope(h, r.dims, r.base, r.scale, r.row_offsets);
  return mx::reshape(mx::transpose(h, {0, 2, 1, 3}), y.shape());
}

// x against one or more weights of one type (q, k and v of one input; gate and up), one output each, as
// one graph node: one activation copy (and, with int8 activations, one quantization) and one parallel pass
// over all the weights' rows. Inputs: x, the weights as stored, then (packed) their int8 repacks
// (ggml_q8_pack), which the product reads (the stored ones serve the gradient), then the fused ops'
// operands: the norm's weight, the residual. A decode step has a few hundred graph nodes and each costs
// microseconds of scheduling, so the norm before and the activation or residual add after ride along.
class CpuGgmlMatmul : public mx::Primitive {
 public:
  CpuGgmlMatmul(mx::Stream s, uint32_t type, bool int8, int weights, bool packed, Fused fused = {})
      : mx::Primitive(s), type_(type), int8_(int8), packed_(packed), n_(weights), fused_(fused) {}

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& outs) override {
    enqueue_cpu(stream(), in, outs, [&] {
      return [ins = weak_copies(in), os = weak_copies(outs), t = type_, q = int8_, p = packed_, n = n_,
              f = fused_]() mutable { run(ins, os, t, q, p, n, f); };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[kernels] the llama.cpp block matmul runs on the CPU only");
  }
  const char* name() const override {
    return packed_ ? "MlxgpCpuGgmlMatmulQ8Packed" : int8_ ? "MlxgpCpuGgmlMatmulQ8" : "MlxgpCpuGgmlMatmul";
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    for (int arg : argnums)
      if (arg >= 1 && arg < operands())
        throw std::invalid_argument("[kernels] quantized weights have no gradient (they are frozen)");
    if (fused_ == Fused{}) {  // dx = sum over the weights of g_i W_i, W_i dequantized
      std::optional<mx::array> dx;
      for (size_t i = 0; i < cotangents.size(); ++i) {
        auto w = ggml_dequantize(primals[i + 1], type_, primals[0].shape(-1));
        auto d = mx::matmul(cotangents[i], mx::astype(w, cotangents[i].dtype()));
        dx = dx ? mx::add(*dx, d) : d;
      }
      return {*dx};
    }
    // Fused: the gradient of the same ops one by one, over x, the norm's weight and the residual.
    std::vector<mx::array> ws(primals.begin() + 1, primals.begin() + 1 + n_), packed;
    if (packed_) packed.assign(primals.begin() + 1 + n_, primals.begin() + 1 + 2 * n_);
    const auto type = type_;
    const bool int8 = int8_;
    const Fused f = fused_;
    auto unfused = [=](const std::vector<mx::array>& d) {  // d: x, then the fused ops' operands
      auto x = f.norm ? rms_norm(d[0], d[1], f.eps) : d[0];
      auto ys = ggml_matmul_multi(x, ws, type, int8, packed);
      if (f.swiglu) ys = {swiglu(ys[0], ys[1])};
      if (f.rope)
        for (int i = 0; i < 2; ++i) ys[i] = rope_heads(ys[i], *f.rope);
      if (f.residual) ys[0] = mx::add(d.back(), ys[0]);
      return ys;
    };
    std::vector<mx::array> diff{primals[0]};
    diff.insert(diff.end(), primals.begin() + operands(), primals.end());
    auto grads = mx::vjp(unfused, diff, cotangents).second;
    std::vector<mx::array> out;
    for (int arg : argnums) out.push_back(grads[arg == 0 ? 0 : arg - operands() + 1]);
    return out;
  }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const CpuGgmlMatmul*>(&other);
    return o && o->type_ == type_ && o->int8_ == int8_ && o->packed_ == packed_ && o->n_ == n_ && o->fused_ == fused_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override {
    std::vector<mx::Shape> shapes;
    for (int i = 1; i <= (fused_.swiglu ? 1 : n_); ++i) {
      auto s = in[0].shape();
      s.back() = in[i].shape(0);
      shapes.push_back(s);
    }
    return shapes;
  }

 private:
  // Where the fused ops' operands start: after x, the weights and their repacks.
  int operands() const { return 1 + (packed_ ? 2 : 1) * n_; }

  static void run(const std::vector<mx::array>& ins, std::vector<mx::array>& os, uint32_t t, bool q, bool p, int n,
                  const Fused& f) {
    RowMajor<float> xr(ins[0]);
    const int K = ins[0].shape(-1);
    const int M = static_cast<int>(ins[0].size() / K);
    if (M == 0) return;
    const size_t extra = 1 + (p ? 2 : 1) * n;
    // Buffers kept by the thread between calls: allocated per call, a prompt chunk's megabytes came back
    // from the allocator as fresh pages, zeroed on first touch (61% of a quantized-cache prefill's page
    // faults were the gate/up scratch's zero fill; a 2k-token prompt spent 1 s of system time).
    // (References: the parallel lambdas below run on other threads, where the names would mean their own.)
    thread_local AlignedVector<float> tls_xa, tls_scratch;
    AlignedVector<float>& xa = tls_xa;
    AlignedVector<float>& scratch = tls_scratch;
    const float* x = nullptr;
    if (f.norm) {
      RowMajor<float> nw(ins[extra]);
      if (xa.size() < static_cast<size_t>(M) * K) xa.resize(static_cast<size_t>(M) * K);
      parallel_rows(M, 4 * K, [&](int r0, int r1) { rms_norm_rows(xr.ptr, nw.ptr, xa.data(), K, f.eps, r0, r1); });
      x = xa.data();
    } else {
      x = aligned_copy(xr.ptr, static_cast<size_t>(M) * K, xa);
    }
    // With the activation after them, the two products go to a scratch buffer first.
    const size_t out_size = os[0].size();
    if (f.swiglu && scratch.size() < 2 * out_size) scratch.resize(2 * out_size);
    std::vector<RowMajor<uint8_t>> ws;
    ws.reserve(n);
    std::vector<GgmlSegment> segs;
    for (int i = 0; i < n; ++i) {
      const auto& w = ins[(p ? 1 + n : 1) + i];  // the weights the product reads
      ws.emplace_back(w);
      float* dst = f.swiglu ? scratch.data() + i * out_size : os[i].data<float>();
      segs.push_back({ws.back().ptr, w.shape(0), static_cast<size_t>(w.shape(1)), dst});
    }
    if (p) ggml_q8_packed_product(t, x, M, K, segs);
    else ggml_product(t, x, M, K, segs, q);
    float* out = os[0].data<float>();
    if (f.swiglu) swiglu_flat(scratch.data(), scratch.data() + out_size, out, out_size);
    if (f.rope)
      rope_heads_inplace(os[0].data<float>(), os[0].shape(-1) / f.rope->head_dim, os[1].data<float>(),
                         os[1].shape(-1) / f.rope->head_dim, M, ins[0].ndim() >= 2 ? ins[0].shape(-2) : 1, *f.rope);
    if (f.residual) {  // residual + y, the order mx::add(residual, y) adds in
      RowMajor<float> r(ins.back());
      for (size_t i = 0; i < out_size; ++i) out[i] = r.ptr[i] + out[i];
    }
  }

  uint32_t type_;
  bool int8_, packed_;
  int n_;
  Fused fused_;
};

class CpuGgmlDequantize : public mx::UnaryPrimitive {
 public:
  CpuGgmlDequantize(mx::Stream s, uint32_t type) : mx::UnaryPrimitive(s), type_(type) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      return [w = mx::array::unsafe_weak_copy(in[0]), o = mx::array::unsafe_weak_copy(out), t = type_]() mutable {
        run_ggml_dequantize(w, o, t);
      };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] llama.cpp block dequantization runs on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuGgmlDequantize"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const CpuGgmlDequantize*>(&other);
    return o && o->type_ == type_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>&) override { return {}; }

 private:
  uint32_t type_;
};

}  // namespace

void ggml_product(uint32_t type, const float* x, int M, int K, const uint8_t* w, int N, size_t row_bytes, float* out,
                  bool int8_activations) {
  if (M == 0 || N == 0) return;
  if (int8_activations || ggml_simd_supported(type))
    return ggml_product(type, x, M, K, {GgmlSegment{w, N, row_bytes, out}}, int8_activations);
  const Isa isa = available() ? detect_isa() : Isa::portable;
  parallel_rows(N, K * M, [&](int n0, int n1) {
    AlignedVector<float> tile(static_cast<size_t>(kTileRows) * K);
    for (int t0 = n0; t0 < n1; t0 += kTileRows) {
      const int rows = std::min(kTileRows, n1 - t0);
      for (int r = 0; r < rows; ++r)
        dequantize_ggml_row(type, w + (t0 + r) * row_bytes, tile.data() + static_cast<size_t>(r) * K, K);
      // out[m, t0 + r] = x[m] . tile[r]: the dense kernel with the output offset by t0 (stride N).
      DenseArgs a;
      a.x = x;
      a.w = tile.data();
      a.out = out + t0;
      a.M = M;
      a.N = N;
      a.K = K;
      dense_rows(a, 0, rows, isa);
    }
  });
}

void ggml_product(uint32_t type, const float* x, int M, int K, const std::vector<GgmlSegment>& segs,
                  bool int8_activations) {
  if (M == 0 || segs.empty()) return;
  if (int8_activations) return ggml_q8_product(type, x, M, K, segs);
  if (!ggml_simd_supported(type)) {
    for (const auto& sg : segs) ggml_product(type, x, M, K, sg.w, sg.N, sg.row_bytes, sg.out);
    return;
  }
  parallel_rows(total_rows(segs), K * M, [&](int g0, int g1) {
    for_segment_rows(segs, g0, g1, [&](const GgmlSegment& sg, int n0, int n1) {
      GgmlRowsArgs a;
      a.x = x;
      a.w = sg.w;
      a.out = sg.out;
      a.M = M;
      a.N = sg.N;
      a.K = K;
      a.row_bytes = sg.row_bytes;
      ggml_rows(type, a, n0, n1);
    });
  });
}

void check_int8_activations(uint32_t type, bool int8_activations) {
  if (!int8_activations) return;
  if (!ggml_q8_supported(type)) throw std::invalid_argument("[kernels] " + ggml_q8_unsupported_reason(type));
  if (mx::default_device() != mx::Device::cpu)
    throw std::invalid_argument("[kernels] int8 activations need the CPU as the default device");
}

void check_ggml_blocks(const mx::array& w, uint32_t type, int K) {
  const GgmlBlock b = ggml_block(type);
  if (b.elements == 0) throw std::invalid_argument("[kernels] unknown llama.cpp block type " + std::to_string(type));
  if (w.dtype() != mx::uint8 || w.ndim() < 1 || K <= 0 || K % b.elements != 0 ||
      w.shape(-1) != K / b.elements * b.bytes)
    throw std::invalid_argument("[kernels] llama.cpp block tensor does not hold rows of " + std::to_string(K) +
                                " values");
}

// Whether the CPU primitive multiplies M rows by `type` blocks; otherwise the weight is dequantized once
// and BLAS / the device multiplies (prefill-sized products, other devices). The fused SIMD kernel reads
// each weight once per 8 rows, so it keeps batches up to the affine kernel's GEMM threshold; the tile
// route dequantizes per call and keeps only decode-sized ones. llama.cpp's arithmetic holds at every M
// (its prefill quantizes the activations too).
bool ggml_cpu_product(uint32_t type, int64_t M, bool int8_activations) {
  const int64_t max_rows = ggml_simd_supported(type) ? kQmmGemmRows - 1 : kLinearMaxRows;
  return int8_activations || (mx::default_device() == mx::Device::cpu && M <= max_rows);
}

bool ggml_type_supported(uint32_t type) { return ggml_block(type).elements > 1; }

int ggml_row_bytes(uint32_t type, int K) {
  const GgmlBlock b = ggml_block(type);
  return b.elements && K % b.elements == 0 ? K / b.elements * b.bytes : 0;
}

mx::array ggml_dequantize(const mx::array& w, uint32_t type, int K) {
  check_ggml_blocks(w, type, K);
  auto shape = w.shape();
  shape.back() = K;
  // Always on the CPU stream: the result is in unified memory for any device that reads it.
  return mx::array(shape, mx::float32, std::make_shared<CpuGgmlDequantize>(mx::default_stream(mx::Device::cpu), type),
                   {w});
}

namespace {

void check_weight(const mx::array& w, uint32_t type, int K) {
  check_ggml_blocks(w, type, K);
  if (w.ndim() != 2) throw std::invalid_argument("[kernels] llama.cpp block matmul needs a 2-D weight");
}

// The CPU primitive over float32 x and checked weights (and, when given, their int8 repacks and the fused
// ops' operands, in Fused's order).
std::vector<mx::array> cpu_matmul(const mx::array& x, const std::vector<mx::array>& ws, uint32_t type, bool int8,
                                  const std::vector<mx::array>& packed, const Fused& fused = {},
                                  const std::vector<mx::array>& operands = {}) {
  std::vector<mx::array> inputs{x};
  std::vector<mx::Shape> shapes;
  for (const auto& w : ws) {
    inputs.push_back(w);
    auto s = x.shape();
    s.back() = w.shape(0);
    if (!fused.swiglu || shapes.empty()) shapes.push_back(s);
  }
  inputs.insert(inputs.end(), packed.begin(), packed.end());
  inputs.insert(inputs.end(), operands.begin(), operands.end());
  const auto n = shapes.size();
  return mx::array::make_arrays(std::move(shapes), std::vector<mx::Dtype>(n, mx::float32),
                                std::make_shared<CpuGgmlMatmul>(mx::default_stream(mx::Device::cpu), type, int8,
                                                                static_cast<int>(ws.size()), !packed.empty(), fused),
                                inputs);
}

// The repacks match the weights one for one, in shape, and come with int8 activations.
void check_packed(const std::vector<mx::array>& ws, const std::vector<mx::array>& packed, bool int8) {
  if (packed.empty()) return;
  bool ok = int8 && packed.size() == ws.size();
  for (size_t i = 0; ok && i < ws.size(); ++i)
    ok = packed[i].shape() == ws[i].shape() && packed[i].dtype() == mx::uint8;
  if (!ok) throw std::invalid_argument("[kernels] int8 repacked weights must match the weights and int8 activations");
}

}  // namespace

mx::array ggml_matmul(const mx::array& x, const mx::array& w, uint32_t type, bool int8_activations,
                      const std::optional<mx::array>& packed) {
  const int K = x.shape(-1);
  check_weight(w, type, K);
  check_int8_activations(type, int8_activations);
  std::vector<mx::array> ps;
  if (packed) ps.push_back(*packed);
  check_packed({w}, ps, int8_activations);
  if (!ggml_cpu_product(type, K ? static_cast<int64_t>(x.size() / K) : 0, int8_activations)) {
    auto wd = ggml_dequantize(w, type, K);
    if (x.dtype() != mx::float32) wd = mx::astype(wd, x.dtype());
    return linear(x, wd);
  }
  auto xf = x.dtype() == mx::float32 ? x : mx::astype(x, mx::float32);
  auto y = cpu_matmul(xf, {w}, type, int8_activations, ps)[0];
  return x.dtype() == mx::float32 ? y : mx::astype(y, x.dtype());
}

std::vector<mx::array> ggml_matmul_multi(const mx::array& x, const std::vector<mx::array>& ws, uint32_t type,
                                         bool int8_activations, const std::vector<mx::array>& packed) {
  const int K = x.shape(-1);
  check_packed(ws, packed, int8_activations);
  // One node where ggml_matmul would run the CPU primitive for each weight; otherwise each its own way.
  if (ws.size() < 2 || x.dtype() != mx::float32 ||
      !ggml_cpu_product(type, K ? static_cast<int64_t>(x.size() / K) : 0, int8_activations)) {
    std::vector<mx::array> out;
    for (size_t i = 0; i < ws.size(); ++i)
      out.push_back(ggml_matmul(x, ws[i], type, int8_activations,
                                packed.empty() ? std::nullopt : std::optional<mx::array>(packed[i])));
    return out;
  }
  for (const auto& w : ws) check_weight(w, type, K);
  check_int8_activations(type, int8_activations);
  return cpu_matmul(x, ws, type, int8_activations, packed);
}

std::optional<std::vector<mx::array>> ggml_matmul_fused(const mx::array& x, const std::vector<mx::array>& ws,
                                                        uint32_t type, bool int8_activations,
                                                        const std::vector<mx::array>& packed, const GgmlFusion& f) {
  const int K = x.shape(-1);
  check_packed(ws, packed, int8_activations);
  const bool one_output = f.swiglu || ws.size() == 1;
  if (ws.empty() || (f.swiglu && ws.size() != 2) || (f.residual && !one_output))
    throw std::invalid_argument("[kernels] a fused swiglu takes two weights and a residual one output");
  for (const auto& w : ws) check_weight(w, type, K);
  check_int8_activations(type, int8_activations);
  if (x.dtype() != mx::float32 || !ggml_cpu_product(type, K ? static_cast<int64_t>(x.size() / K) : 0, int8_activations))
    return std::nullopt;
  if ((f.norm_weight && !rms_norm_supported(x, *f.norm_weight)) || (f.swiglu && !swiglu_supported(x, x)))
    return std::nullopt;
  if (f.rope && (f.swiglu || ws.size() < 2 || f.rope->head_dim <= 0 || ws[0].shape(0) % f.rope->head_dim != 0 ||
                 ws[1].shape(0) % f.rope->head_dim != 0))
    throw std::invalid_argument("[kernels] a fused rope rotates the first two of several outputs in whole heads");
  if (f.rope) {
    const int T = x.ndim() >= 2 ? x.shape(-2) : 1, B = static_cast<int>(x.size() / K) / std::max(T, 1);
    const auto& r = *f.rope;
    if (x.ndim() != 3 || !available() || r.dims <= 0 || r.dims % 2 != 0 || r.dims > r.head_dim ||
        (!r.row_offsets.empty() && static_cast<int>(r.row_offsets.size()) != B))
      return std::nullopt;
  }
  Fused fused{f.norm_weight.has_value(), f.swiglu, f.residual.has_value(), f.eps, f.rope};
  std::vector<mx::array> operands;
  if (f.norm_weight) operands.push_back(*f.norm_weight);
  if (f.residual) {
    auto s = x.shape();
    s.back() = ws[0].shape(0);
    if (f.residual->shape() != s || f.residual->dtype() != mx::float32) return std::nullopt;
    operands.push_back(*f.residual);
  }
  return cpu_matmul(x, ws, type, int8_activations, packed, fused, operands);
}

std::optional<mx::array> ggml_q8_pack(const mx::array& w, uint32_t type, int K) {
  check_ggml_blocks(w, type, K);
  if (w.ndim() != 2 || !ggml_q8_packable(type, w.shape(0)) || mx::default_device() != mx::Device::cpu)
    return std::nullopt;
  auto stored = mx::contiguous(w);
  mx::eval(stored);
  mx::array out(mx::allocator::malloc(stored.nbytes()), w.shape(), mx::uint8);
  ggml_q8_pack(type, stored.data<uint8_t>(), w.shape(0), K, out.data<uint8_t>());
  return out;
}

}  // namespace mlxgp::kernels
