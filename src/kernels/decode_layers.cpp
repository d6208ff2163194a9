// kernels::decode_layers: a decode step's pre-norm llama blocks as one CPU primitive (decode_layers.h). The
// ops are the row functions and products the per-op primitives run, called in the same order on the same
// values, so nothing but the graph changes: a SmolLM2 decode step goes from about 215 dispatched nodes
// (517 arrays) to a handful.
#include "kernels/decode_layers.h"

#include <cstring>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <vector>

#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "kernels/aligned.h"
#include "kernels/cpu_task.h"
#include "kernels/decode_attention.h"
#include "kernels/fused_rows.h"
#include "kernels/ggml_product.h"
#include "kernels/ggml_q8.h"
#include "kernels/qmm_cpu.h"
#include "kernels/row_major.h"
#include "kernels/thread_pool.h"

namespace mx = mlx::core;

namespace mlxgp::kernels {

namespace {

// Inputs: x, then per layer its two norms' weights and seven products' weights (this order), then every
// layer's key buffers (one, or a quantized cache's three), then every layer's value buffers.
constexpr int kPerLayer = 9;

// Buffer i of a float or quantized cache, which the caller holds alone for this write (decode_layers' contract).
template <class T>
T* writable_data(const mx::array& a) {
  if (!a.flags().row_contiguous)
    throw std::logic_error("[kernels] fused decode layers need row-contiguous cache buffers");
  return const_cast<T*>(a.data<T>());
}

// Rows [B, Hk] of k and v (hd floats each) into a quantized cache's buffers at `slot`, and the views
// decode attention reads.
struct QuantizedWrite {
  QuantizedRows k, v;
  QuantizedWrite(const mx::array* kin, const mx::array* vin, const float* kr, const float* vr, int rows, int hd,
                 int slot, KvQuantization quant) {
    const int cap = kin[0].shape(2), words = hd * quant.bits / 32, groups = hd / quant.group;
    auto fill = [&](QuantizedRows& r, const mx::array* in, const float* x) {
      uint32_t* data = writable_data<uint32_t>(in[0]);
      float* scales = writable_data<float>(in[1]);
      float* biases = writable_data<float>(in[2]);
      for (int i = 0; i < rows; ++i) {
        const size_t at = static_cast<size_t>(i) * cap + slot;
        quantize_row(x + static_cast<size_t>(i) * hd, hd, quant.group, quant.bits, data + at * words,
                     scales + at * groups, biases + at * groups);
      }
      r.data = data;
      r.scales = scales;
      r.biases = biases;
      const int64_t hk = in[0].shape(1);
      r.ds[2] = words;
      r.ss[2] = r.bs[2] = groups;
      r.ds[1] = static_cast<int64_t>(cap) * words;
      r.ss[1] = r.bs[1] = static_cast<int64_t>(cap) * groups;
      r.ds[0] = hk * r.ds[1];
      r.ss[0] = r.bs[0] = hk * r.ss[1];
      r.bits = quant.bits;
      r.group = quant.group;
    };
    fill(k, kin, kr);
    fill(v, vin, vr);
  }
};

struct Product {
  const DecodeWeight& m;
  const mx::array& w;
  float* out;
};

// Products of one input, as the op-by-op path runs them: consecutive weights of one type, arithmetic and
// layout in one call (ggml_matmul_multi's node), any other alone (ggml_matmul). Each output is the same bits
// either way. x is 64-byte aligned [M, K].
void products(const float* x, int M, int K, std::initializer_list<Product> ps) {
  std::vector<RowMajor<uint8_t>> ws;
  ws.reserve(ps.size());
  std::vector<GgmlSegment> segs;
  const DecodeWeight* first = nullptr;
  auto flush = [&] {
    if (segs.empty()) return;
    if (first->packed) ggml_q8_packed_product(first->type, x, M, K, segs);
    else ggml_product(first->type, x, M, K, segs, first->int8);
    segs.clear();
  };
  for (const auto& p : ps) {
    if (first && (p.m.type != first->type || p.m.int8 != first->int8 || p.m.packed != first->packed)) flush();
    if (segs.empty()) first = &p.m;
    ws.emplace_back(p.w);
    segs.push_back({ws.back().ptr, p.w.shape(0), static_cast<size_t>(p.w.shape(1)), p.out});
  }
  flush();
}

// h [B, D] normalised into out (kernels::rms_norm's rows).
void norm(const float* h, const mx::array& w, float eps, int B, int D, float* out) {
  RowMajor<float> wr(w);
  parallel_rows(B, 4 * D, [&](int r0, int r1) { rms_norm_rows(h, wr.ptr, out, D, eps, r0, r1); });
}

// h = h + y, the order mx::add(residual, y) adds in.
void add_residual(float* h, const float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) h[i] = h[i] + y[i];
}

// n floats (a multiple of 8) to float16, rounded to nearest even as mx::astype rounds.
#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) void to_half(const float* x, int n, uint16_t* out) {
  for (int i = 0; i < n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#else  // decode_layers_supported() is false off x86-64
void to_half(const float*, int, uint16_t*) { throw std::logic_error("[kernels] fused decode runs on x86-64 only"); }
#endif

void run(const std::vector<mx::array>& in, mx::array& out, const std::vector<DecodeLayer>& layers, int slot,
         const std::vector<int>& key_start, KvQuantization quant) {
  const int per_cache = quant.bits ? 3 : 1;
  const int B = in[0].shape(0), D = in[0].shape(-1), L = static_cast<int>(layers.size());
  float* h = out.data<float>();
  {
    RowMajor<float> x(in[0]);
    std::memcpy(h, x.ptr, sizeof(float) * B * D);
  }
  AlignedVector<float> xn(static_cast<size_t>(B) * D), y(static_cast<size_t>(B) * D), q, k, v, att, gu, mid;
  for (int l = 0; l < L; ++l) {
    const DecodeLayer& m = layers[l];
    const mx::array* a = &in[1 + kPerLayer * l];
    const mx::array* kin = &in[1 + kPerLayer * L + per_cache * l];
    const mx::array* vin = &in[1 + kPerLayer * L + per_cache * (L + l)];
    const int Hq = m.n_heads, Hk = m.n_kv_heads, hd = m.head_dim, cap = kin[0].shape(2);
    const int I = a[6].shape(0);
    q.resize(static_cast<size_t>(B) * Hq * hd);
    k.resize(static_cast<size_t>(B) * Hk * hd);
    v.resize(k.size());
    att.resize(q.size());
    gu.resize(2 * static_cast<size_t>(B) * I);
    mid.resize(static_cast<size_t>(B) * I);

    // Attention: the q/k/v node (norm, products, rope), the cache's slice update, decode_attention, then the
    // o_proj node with its residual.
    norm(h, a[0], m.input_eps, B, D, xn.data());
    products(xn.data(), B, D, {{m.q, a[2], q.data()}, {m.k, a[3], k.data()}, {m.v, a[4], v.data()}});
    if (m.rope) rope_heads_inplace(q.data(), Hq, k.data(), Hk, B, 1, *m.rope);
    DecodeArgs da;
    std::optional<QuantizedWrite> qw;
    if (quant.bits) {
      qw.emplace(kin, vin, k.data(), v.data(), B * Hk, hd, slot, quant);
      da.qk = &qw->k;
      da.qv = &qw->v;
    } else if (kin[0].dtype() == mx::float16) {  // kv_cache_dtype float16: the new rows rounded as astype does
      uint16_t* kb = writable_data<uint16_t>(kin[0]);
      uint16_t* vb = writable_data<uint16_t>(vin[0]);
      for (int r = 0; r < B * Hk; ++r) {
        const size_t at = (static_cast<size_t>(r) * cap + slot) * hd;
        to_half(k.data() + static_cast<size_t>(r) * hd, hd, kb + at);
        to_half(v.data() + static_cast<size_t>(r) * hd, hd, vb + at);
      }
      da.k16 = kb;
      da.v16 = vb;
    } else {
      float* kb = writable_data<float>(kin[0]);
      float* vb = writable_data<float>(vin[0]);
      for (int r = 0; r < B * Hk; ++r) {
        const size_t at = (static_cast<size_t>(r) * cap + slot) * hd;
        std::memcpy(kb + at, k.data() + static_cast<size_t>(r) * hd, sizeof(float) * hd);
        std::memcpy(vb + at, v.data() + static_cast<size_t>(r) * hd, sizeof(float) * hd);
      }
      da.k = kb;
      da.v = vb;
    }
    if (!quant.bits) {
      da.ks[0] = da.vs[0] = static_cast<int64_t>(Hk) * cap * hd;
      da.ks[1] = da.vs[1] = static_cast<int64_t>(cap) * hd;
      da.ks[2] = da.vs[2] = hd;
    }
    da.q = q.data();
    da.out = att.data();
    da.Hq = Hq;
    da.Hk = Hk;
    da.Tk = slot + 1;
    da.D = hd;
    da.scale = m.scale;
    da.key_start = &key_start;
    decode_attention_rows(da, B);
    products(att.data(), B, Hq * hd, {{m.o, a[5], y.data()}});
    add_residual(h, y.data(), static_cast<size_t>(B) * D);

    // MLP: the gate/up node (norm, products, silu(gate) * up), then the down node with its residual.
    norm(h, a[1], m.post_eps, B, D, xn.data());
    products(xn.data(), B, D, {{m.gate, a[6], gu.data()}, {m.up, a[7], gu.data() + mid.size()}});
    swiglu_flat(gu.data(), gu.data() + mid.size(), mid.data(), mid.size());
    products(mid.data(), B, I, {{m.down, a[8], y.data()}});
    add_residual(h, y.data(), static_cast<size_t>(B) * D);
  }
}

class CpuDecodeLayers : public mx::UnaryPrimitive {
 public:
  CpuDecodeLayers(mx::Stream s, std::vector<DecodeLayer> layers, int slot, std::vector<int> key_start,
                  KvQuantization quant)
      : mx::UnaryPrimitive(s),
        layers_(std::move(layers)),
        slot_(slot),
        key_start_(std::move(key_start)),
        quant_(quant) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      return [ins = weak_copies(in), o = mx::array::unsafe_weak_copy(out), layers = layers_, slot = slot_,
              starts = key_start_, quant = quant_]() mutable { run(ins, o, layers, slot, starts, quant); };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] the fused decode layers run on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuDecodeLayers"; }
  // Decode only: the model takes this node only for arrays that are not being traced (decoder_fused.cpp).
  std::vector<mx::array> vjp(const std::vector<mx::array>&, const std::vector<mx::array>&, const std::vector<int>&,
                             const std::vector<mx::array>&) override {
    throw std::invalid_argument("[kernels] the fused decode layers have no gradient (they run decode steps only)");
  }
  // It writes its cache inputs: two nodes are never the same.
  bool is_equivalent(const mx::Primitive&) const override { return false; }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override { return {in[0].shape()}; }

 private:
  std::vector<DecodeLayer> layers_;  // the weights' pointers cleared: the node's inputs hold the arrays
  int slot_;
  std::vector<int> key_start_;
  KvQuantization quant_;
};

bool weight_ok(const DecodeWeight& w, int B, int K, int N) {
  if (!w.w || w.w->dtype() != mx::uint8 || w.w->ndim() != 2 || w.w->shape(0) != N) return false;
  const int row_bytes = ggml_row_bytes(w.type, K);
  if (row_bytes <= 0 || w.w->shape(1) != row_bytes || !ggml_cpu_product(w.type, B, w.int8)) return false;
  if (w.int8 && !ggml_q8_supported(w.type)) return false;
  return !w.packed || (w.int8 && ggml_q8_packable(w.type, N));
}

bool norm_ok(const mx::array* w, int D) { return w && w->dtype() == mx::float32 && w->ndim() == 1 && w->shape(0) == D; }

}  // namespace

bool decode_layers_supported(const mx::array& x, const std::vector<DecodeLayer>& layers,
                             const std::vector<mx::array>& keys, const std::vector<mx::array>& values, int slot,
                             KvQuantization quant) {
  if (!available() || machine_isa() == Isa::portable || mx::default_device() != mx::Device::cpu) return false;
  const size_t per_cache = quant.bits ? 3 : 1;
  if (x.dtype() != mx::float32 || x.ndim() != 3 || x.shape(1) != 1 || x.shape(0) < 1 || layers.empty() ||
      keys.size() != per_cache * layers.size() || values.size() != keys.size() || slot < 0)
    return false;
  if (quant.bits && (!quantized_rows_bits_supported(quant.bits) || quant.group < 8 || quant.group % 8 != 0))
    return false;
  const int B = x.shape(0), D = x.shape(2);
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto& m = layers[l];
    const int Hq = m.n_heads, Hk = m.n_kv_heads, hd = m.head_dim;
    if (Hk <= 0 || Hq % Hk != 0 || hd <= 0 || hd % 8 != 0 || !norm_ok(m.input_norm, D) || !norm_ok(m.post_norm, D))
      return false;
    if (!m.gate.w || m.gate.w->ndim() != 2) return false;
    const int I = m.gate.w->shape(0);
    if (!weight_ok(m.q, B, D, Hq * hd) || !weight_ok(m.k, B, D, Hk * hd) || !weight_ok(m.v, B, D, Hk * hd) ||
        !weight_ok(m.o, B, Hq * hd, D) || !weight_ok(m.gate, B, D, I) || !weight_ok(m.up, B, D, I) ||
        !weight_ok(m.down, B, I, D))
      return false;
    if (m.rope && (m.rope->dims <= 0 || m.rope->dims % 2 != 0 || m.rope->dims > hd || m.rope->head_dim != hd ||
                   (!m.rope->row_offsets.empty() && static_cast<int>(m.rope->row_offsets.size()) != B)))
      return false;
    if (quant.bits && hd % quant.group != 0) return false;
    if (keys[per_cache * l].ndim() != 4) return false;
    const int cap = keys[per_cache * l].shape(2);
    for (const auto* bufs : {&keys, &values})
      for (size_t i = 0; i < per_cache; ++i) {
        const mx::array& c = (*bufs)[per_cache * l + i];
        // float32 or float16 [rows, Hk, cap, hd] (keys and values alike); quantized: uint32 data
        // [.., hd * bits / 32], float32 scales and biases [.., hd / group]. A batch cache may hold rows past B
        // for rows that join later (StandardKVCache).
        const bool words = quant.bits && i == 0;
        const int last = !quant.bits ? hd : words ? hd * quant.bits / 32 : hd / quant.group;
        const mx::Dtype want = words ? mx::uint32 : quant.bits ? mx::float32 : keys.front().dtype();
        if ((want != mx::float32 && want != mx::float16 && want != mx::uint32) || c.dtype() != want || c.ndim() != 4 ||
            c.shape(0) < B || c.shape(1) != Hk || c.shape(2) != cap || c.shape(3) != last || cap <= slot)
          return false;
      }
  }
  return true;
}

mx::array decode_layers(const mx::array& x, const std::vector<DecodeLayer>& layers, const std::vector<mx::array>& keys,
                        const std::vector<mx::array>& values, int slot, const std::vector<int>& key_start,
                        KvQuantization quant) {
  if (!decode_layers_supported(x, layers, keys, values, slot, quant))
    throw std::invalid_argument("[kernels] these layers cannot run as one fused decode node");
  if (!key_start.empty() && static_cast<int>(key_start.size()) != x.shape(0))
    throw std::invalid_argument("[kernels] fused decode layers: one key start per batch row");
  std::vector<mx::array> inputs{x};
  std::vector<DecodeLayer> meta;
  for (const auto& m : layers) {
    for (const auto* w : {m.input_norm, m.post_norm, m.q.w, m.k.w, m.v.w, m.o.w, m.gate.w, m.up.w, m.down.w})
      inputs.push_back(*w);
    DecodeLayer c = m;
    c.input_norm = c.post_norm = nullptr;
    for (auto* w : {&c.q, &c.k, &c.v, &c.o, &c.gate, &c.up, &c.down}) w->w = nullptr;
    meta.push_back(std::move(c));
  }
  inputs.insert(inputs.end(), keys.begin(), keys.end());
  inputs.insert(inputs.end(), values.begin(), values.end());
  return mx::array(
      x.shape(), mx::float32,
      std::make_shared<CpuDecodeLayers>(mx::default_stream(mx::Device::cpu), std::move(meta), slot, key_start, quant),
      std::move(inputs));
}

}  // namespace mlxgp::kernels
