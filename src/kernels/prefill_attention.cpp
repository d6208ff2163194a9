// mlxgp::kernels::prefill_attention: attention for many queries at once (a prompt, a prefill chunk on
// top of a cache) as one CPU primitive, in tiles with a running softmax (FlashAttention's online
// softmax). The route it replaces (BLAS products around a masked softmax, attention.cpp's
// blocked_attention) cost far more than its arithmetic at long prompts: a 2 MB query block at 8k keys
// holds 16 queries, each block is a graph of slices, small sgemm calls and a copy of the visible keys,
// and an 8,190-token prompt spent about 23 of its 28 s there. Here a task is (batch row, KV head, 32
// queries): the queries of every head sharing that KV head are transposed once, keys and values are read
// in place from the cache's strided view, 64 at a time, and no score outlives its tile.
//
// Layouts inside a task (P = the task's rows padded to a multiple of 8; row i = head r * n + query t):
// qt [D][P] the scaled queries, ot [D][P] the unnormalised outputs, st [kKeys][P] a tile's scores then
// probabilities. Key-major scores let eight rows share every vector: a key's value is broadcast against
// eight rows' queries (or probabilities), and a row's maximum over keys is a vertical max, with no
// horizontal sums anywhere.
#include <algorithm>
#include <cmath>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "kernels/aligned.h"
#include "kernels/cpu_task.h"
#include "kernels/decode_attention.h"
#include "kernels/kernels.h"
#include "kernels/prefill_attention.h"
#include "kernels/qmm_cpu.h"
#include "kernels/simd_exp.h"
#include "kernels/tile_isas.h"
#include "kernels/thread_pool.h"

namespace mx = mlx::core;

namespace mlxgp::kernels {

namespace {

constexpr int kQueries = 32;  // queries per task: rows = heads per KV head x this
constexpr int kKeys = 64;     // keys per tile

struct Args {
  const float* q = nullptr;  // element (b, h, t, d) at b * qs[0] + h * qs[1] + t * qs[2] + d * qs[3]
  int64_t qs[4] = {};
  std::optional<KvRows> k, v;                        // a float cache, read in place
  const QuantizedRows *qk = nullptr, *qv = nullptr;  // or a quantized one, dequantized a tile at a time
  float* out = nullptr;                              // [B, Hq, Tq, D] row-major
  int B = 0, Hq = 0, Hk = 0, Tq = 0, Tk = 0, D = 0;
  float scale = 1.0f;
  bool causal = false;
  const std::vector<int>* key_start = nullptr;
  bool avx512 = false;  // the tile products' vector width (rows are padded to a multiple of it)
};

#if defined(__x86_64__)

// All ones in the lanes where lo <= key <= hi.
MLXGP_SIMD_EXP_AVX2 inline __m256 visible(__m256i lo, __m256i hi, int key) {
  const __m256i k = _mm256_set1_epi32(key);
  return _mm256_castsi256_ps(_mm256_andnot_si256(_mm256_or_si256(_mm256_cmpgt_epi32(lo, k), _mm256_cmpgt_epi32(k, hi)),
                                                 _mm256_set1_epi32(-1)));
}

// The running softmax over one tile of n keys from key j0, for the eight rows of vector g: masks the
// keys outside each row's [lo, hi] (only when the tile is not wholly visible to all eight), turns the
// scores into probabilities against the new running maximum, and rescales the row's sum and outputs.
MLXGP_SIMD_EXP_AVX2 void softmax_tile(float* st, int P, int g, int j0, int n, int D, const int* lo, const int* hi,
                                      float* m, float* l, float* ot) {
  const int* rlo = lo + 8 * g;
  const int* rhi = hi + 8 * g;
  const bool whole = j0 >= *std::max_element(rlo, rlo + 8) && j0 + n - 1 <= *std::min_element(rhi, rhi + 8);
  const __m256i vlo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rlo));
  const __m256i vhi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rhi));
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  float* col = st + 8 * g;
  __m256 top = ninf;
  for (int j = 0; j < n; ++j) {
    __m256 s = _mm256_loadu_ps(col + static_cast<size_t>(j) * P);
    if (!whole) {
      s = _mm256_blendv_ps(ninf, s, visible(vlo, vhi, j0 + j));
      _mm256_storeu_ps(col + static_cast<size_t>(j) * P, s);
    }
    top = _mm256_max_ps(top, s);
  }
  const __m256 old = _mm256_loadu_ps(m + 8 * g);
  const __m256 now = _mm256_max_ps(old, top);
  // A row that has seen no key yet keeps -inf: measure against 0 so nothing becomes NaN (its
  // probabilities are masked to 0 below and its sum and outputs are still 0).
  const __m256 ref = _mm256_blendv_ps(now, _mm256_setzero_ps(), _mm256_cmp_ps(now, ninf, _CMP_EQ_OQ));
  __m256 sum = _mm256_setzero_ps();
  for (int j = 0; j < n; ++j) {
    __m256 p = simd::exp8(_mm256_sub_ps(_mm256_loadu_ps(col + static_cast<size_t>(j) * P), ref));
    if (!whole) p = _mm256_and_ps(p, visible(vlo, vhi, j0 + j));  // exp8(-inf) is tiny, not 0
    _mm256_storeu_ps(col + static_cast<size_t>(j) * P, p);
    sum = _mm256_add_ps(sum, p);
  }
  const __m256 alpha = simd::exp8(_mm256_sub_ps(old, ref));  // multiplies zeros while old is -inf
  _mm256_storeu_ps(m + 8 * g, now);
  _mm256_storeu_ps(l + 8 * g, _mm256_fmadd_ps(_mm256_loadu_ps(l + 8 * g), alpha, sum));
  for (int d = 0; d < D; ++d) {
    float* o = ot + static_cast<size_t>(d) * P + 8 * g;
    _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_loadu_ps(o), alpha));
  }
}

// One task: batch row b, KV head h, queries [t0, t0 + n).
void run_task(const Args& a, int b, int h, int t0, int n) {
  const int rep = a.Hq / a.Hk, D = a.D, rows = rep * n, width = a.avx512 ? 16 : 8,
            P = (rows + width - 1) / width * width;
  const int start = a.key_start && !a.key_start->empty() ? (*a.key_start)[b] : 0;
  std::vector<float> qt(static_cast<size_t>(D) * P, 0.0f), ot(qt.size(), 0.0f);
  std::vector<float> st(static_cast<size_t>(kKeys) * P), m(P, -INFINITY), l(P, 0.0f);
  std::vector<int> lo(P), hi(P);
  int kmin = a.Tk, kmax = 0;
  for (int r = 0; r < rep; ++r)
    for (int t = 0; t < n; ++t) {
      const int i = r * n + t;
      const float* src = a.q + b * a.qs[0] + (h * rep + r) * a.qs[1] + (t0 + t) * a.qs[2];
      for (int d = 0; d < D; ++d) qt[static_cast<size_t>(d) * P + i] = src[d * a.qs[3]] * a.scale;
      // Causal: query t0 + t sits at key Tk - Tq + t0 + t. Keys before the row's start are hidden too, but
      // a query never sees nothing: a padding query before the start sees itself (as the softmax kernel
      // of attention.cpp and mx::fast sdpa's decode path clamp it).
      hi[i] = a.causal ? a.Tk - a.Tq + t0 + t : a.Tk - 1;
      lo[i] = std::min(start, hi[i]);
      kmin = std::min(kmin, lo[i]);
      kmax = std::max(kmax, hi[i]);
    }
  for (int i = rows; i < P; ++i) {  // padding rows: zero queries that see the whole range, then dropped
    lo[i] = kmin;
    hi[i] = kmax;
  }
  // A quantized cache's tile of keys (then values) is dequantized into a buffer that stays in L1.
  thread_local AlignedVector<float> ktile, vtile;
  const float *kb = nullptr, *vb = nullptr;
  int64_t kst = D, vst = D;
  if (a.qk) {
    ktile.resize(static_cast<size_t>(kKeys) * D);
    vtile.resize(ktile.size());
    prefetch_quantized_rows(*a.qk, b, h, kmin, kmax + 1, D);
    prefetch_quantized_rows(*a.qv, b, h, kmin, kmax + 1, D);
  } else {
    kb = a.k->p + b * a.k->st[0] + h * a.k->st[1];
    vb = a.v->p + b * a.v->st[0] + h * a.v->st[1];
    kst = a.k->st[2];
    vst = a.v->st[2];
  }
  for (int j0 = kmin; j0 <= kmax; j0 += kKeys) {
    const int nk = std::min(kKeys, kmax + 1 - j0);
    const float* kt = kb ? kb + j0 * kst : ktile.data();
    const float* vt = vb ? vb + j0 * vst : vtile.data();
    if (a.qk) {
      dequantize_rows(*a.qk, b, h, j0, j0 + nk, D, ktile.data(), kmax + 1);
      dequantize_rows(*a.qv, b, h, j0, j0 + nk, D, vtile.data(), kmax + 1);
    }
    if (a.avx512) avx512::tile_scores(qt.data(), P, kt, kst, nk, D, st.data());
    else avx2::tile_scores(qt.data(), P, kt, kst, nk, D, st.data());
    for (int g = 0; g < P / 8; ++g)
      softmax_tile(st.data(), P, g, j0, nk, D, lo.data(), hi.data(), m.data(), l.data(), ot.data());
    if (a.avx512) avx512::tile_values(st.data(), P, vt, vst, nk, D, ot.data());
    else avx2::tile_values(st.data(), P, vt, vst, nk, D, ot.data());
  }
  for (int r = 0; r < rep; ++r)
    for (int t = 0; t < n; ++t) {
      const int i = r * n + t;
      float* dst = a.out + ((static_cast<size_t>(b) * a.Hq + h * rep + r) * a.Tq + t0 + t) * D;
      const float inv = 1.0f / l[i];
      for (int d = 0; d < D; ++d) dst[d] = ot[static_cast<size_t>(d) * P + i] * inv;
    }
}
#else  // x86-64 only: prefill_attention_supported() is false elsewhere, so this is never reached
void run_task(const Args&, int, int, int, int) {
  throw std::logic_error("[kernels] prefill attention runs on x86-64 only");
}
#endif

// in: {q, k, v}, or with `bits` {q, keys' data, scales, biases, values' data, scales, biases}.
void run(const std::vector<mx::array>& in, mx::array& out, float scale, bool causal, const std::vector<int>& key_start,
         int bits, int group) {
  const mx::array& q = in[0];
  const mx::array& k = in[1];
  Args a;
  std::optional<QuantizedRows> qk, qv;
  if (bits) {
    qk = quantized_rows(&in[1], bits, group);
    qv = quantized_rows(&in[4], bits, group);
    a.qk = &*qk;
    a.qv = &*qv;
  } else {
    a.k.emplace(in[1]);
    a.v.emplace(in[2]);
  }
  a.q = q.data<float>();
  for (int i = 0; i < 4; ++i) a.qs[i] = q.strides()[i];
  a.out = out.data<float>();
  a.B = q.shape(0);
  a.Hq = q.shape(1);
  a.Hk = k.shape(1);
  a.Tq = q.shape(2);
  a.Tk = k.shape(2);
  a.D = q.shape(3);
  a.scale = scale;
  a.causal = causal;
  a.key_start = &key_start;
  a.avx512 = detect_isa() == Isa::avx512;
  const int tiles = (a.Tq + kQueries - 1) / kQueries, heads = a.B * a.Hk;
  // The last query tiles see the most keys (causal): hand them out first so the threads finish together.
  parallel_for(heads * tiles, [&](int task) {
    const int tile = tiles - 1 - task / heads, bh = task % heads;
    const int t0 = tile * kQueries;
    run_task(a, bh / a.Hk, bh % a.Hk, t0, std::min(kQueries, a.Tq - t0));
  });
}

// bits 0: a float cache (inputs q, k, v); otherwise a quantized one (run's seven inputs).
class CpuPrefillAttention : public mx::UnaryPrimitive {
 public:
  CpuPrefillAttention(mx::Stream s, float scale, bool causal, std::vector<int> key_start, int bits = 0, int group = 0)
      : mx::UnaryPrimitive(s),
        scale_(scale),
        causal_(causal),
        key_start_(std::move(key_start)),
        bits_(bits),
        group_(group) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      return [in = weak_copies(in), o = mx::array::unsafe_weak_copy(out), scale = scale_, causal = causal_,
              starts = key_start_, bits = bits_,
              group = group_]() mutable { run(in, o, scale, causal, starts, bits, group); };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] the custom prefill attention runs on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuPrefillAttention"; }

  // Gradients (training) through the blocked route, which computes the same function from MLX products.
  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    if (bits_)  // callers keep traced attention on the MLX ops (quantized_prefill_attention_supported)
      throw std::invalid_argument("[kernels] quantized prefill attention is not differentiable");
    auto f = [this](const std::vector<mx::array>& in) {
      return std::vector<mx::array>{blocked_attention(in[0], in[1], in[2], scale_, causal_, key_start_)};
    };
    auto grads = mx::vjp(f, primals, cotangents).second;
    std::vector<mx::array> picked;
    for (int i : argnums) picked.push_back(grads[i]);
    return picked;
  }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const CpuPrefillAttention*>(&other);
    return o && o->scale_ == scale_ && o->causal_ == causal_ && o->key_start_ == key_start_ && o->bits_ == bits_ &&
           o->group_ == group_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override { return {in[0].shape()}; }

 private:
  float scale_;
  bool causal_;
  std::vector<int> key_start_;
  int bits_, group_;
};

}  // namespace

bool prefill_attention_supported(const mx::array& q, const mx::array& k, const mx::array& v) {
  return attention_supported(q, k, v, true) && q.shape(3) % 8 == 0;
}

mx::array prefill_attention(const mx::array& q, const mx::array& k, const mx::array& v, float scale, bool causal,
                            const std::vector<int>& key_start) {
  if (!key_start.empty() && static_cast<int>(key_start.size()) != q.shape(0))
    throw std::invalid_argument("[kernels] prefill attention: one key start per batch entry");
  return mx::array(q.shape(), mx::float32,
                   std::make_shared<CpuPrefillAttention>(mx::default_stream(mx::Device::cpu), scale, causal, key_start),
                   {q, k, v});
}

bool quantized_prefill_attention_supported(const mx::array& q, const QuantizedArrays& k, const QuantizedArrays& v,
                                           int group_size, int bits) {
  return quantized_attention_inputs_ok(q, k, v, group_size, bits);
}

mx::array quantized_prefill_attention(const mx::array& q, const QuantizedArrays& k, const QuantizedArrays& v,
                                      float scale, bool causal, int group_size, int bits,
                                      const std::vector<int>& key_start) {
  if (!key_start.empty() && static_cast<int>(key_start.size()) != q.shape(0))
    throw std::invalid_argument("[kernels] prefill attention: one key start per batch entry");
  return mx::array(q.shape(), mx::float32,
                   std::make_shared<CpuPrefillAttention>(mx::default_stream(mx::Device::cpu), scale, causal, key_start,
                                                         bits, group_size),
                   {q, k.data, k.scales, k.biases, v.data, v.scales, v.biases});
}

}  // namespace mlxgp::kernels
