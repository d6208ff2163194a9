// mlxgp::kernels::attention: routes float32 attention on the CPU to the decode kernel (one query), the
// tiled prefill kernel (prefill_attention.cpp), or the blocked route here: the two products go to BLAS
// through mx::matmul, the (causal) softmax between them to one vectorised primitive. MLX's CPU
// scaled_dot_product_attention spends most of its time in a scalar exp over the [H, Tq, Tk] scores.
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
#include "kernels/prefill_attention.h"
#include "kernels/qmm_cpu.h"
#include "kernels/row_major.h"
#include "kernels/simd_exp.h"
#include "kernels/thread_pool.h"
#include "kernels/kernels.h"

namespace mx = mlx::core;

namespace mlxgp::kernels {

namespace {

// One row of softmax over columns [lo, n) (the rest of the row is masked and gets 0).
MLXGP_SIMD_EXP_AVX2 void softmax_row(const float* s, float* out, int lo, int n, int cols) {
  std::fill(out, out + lo, 0.0f);
  s += lo;
  out += lo;
  n -= lo;
  cols -= lo;
  float m = -INFINITY;
  for (int j = 0; j < n; ++j) m = std::max(m, s[j]);
  int j = 0;
  float sum = 0.0f;
#if defined(__x86_64__)
  const __m256 mv = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  for (; j + 8 <= n; j += 8) {
    const __m256 e = simd::exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
    _mm256_storeu_ps(out + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, acc);
  sum = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
#endif
  for (; j < n; ++j) sum += out[j] = std::exp(s[j] - m);
  const float inv = 1.0f / sum;
  for (j = 0; j < n; ++j) out[j] *= inv;
  std::fill(out + n, out + cols, 0.0f);
}

// Softmax over the last axis of [B, ..., R, C] scores. With `queries` > 0 the mask is causal for rows
// that cycle through `queries` query positions (GQA packs the heads sharing a key head as
// [rep * Tq] rows) aligned to the last key: row r sees keys j <= (r % queries) + C - queries. With
// `key_start` (one per batch entry: a left-padded batch), keys before it are hidden too.
class CpuMaskedSoftmax : public mx::UnaryPrimitive {
 public:
  CpuMaskedSoftmax(mx::Stream s, int queries, std::vector<int> key_start)
      : mx::UnaryPrimitive(s), queries_(queries), key_start_(std::move(key_start)) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      return [x = mx::array::unsafe_weak_copy(in[0]), o = mx::array::unsafe_weak_copy(out), q = queries_,
              starts = key_start_]() mutable {
        RowMajor<float> xr(x);
        const int cols = x.shape(-1);
        const int rows = static_cast<int>(x.size() / cols);
        const int per_batch = rows / x.shape(0);
        float* dst = o.data<float>();
        parallel_rows(rows, cols * 8, [&](int r0, int r1) {
          for (int r = r0; r < r1; ++r) {
            const int n = q > 0 ? std::min(cols, r % q + cols - q + 1) : cols;
            const int lo = starts.empty() ? 0 : std::min(starts[r / per_batch], n - 1);
            softmax_row(xr.ptr + static_cast<size_t>(r) * cols, dst + static_cast<size_t>(r) * cols, lo, n, cols);
          }
        });
      };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] the custom masked softmax runs on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuMaskedSoftmax"; }

  // y = softmax(x) on the visible columns (0 elsewhere): dx = y * (g - sum(g * y)).
  std::vector<mx::array> vjp(const std::vector<mx::array>&, const std::vector<mx::array>& cotangents,
                             const std::vector<int>&, const std::vector<mx::array>& outputs) override {
    const auto &y = outputs[0], &g = cotangents[0];
    return {mx::multiply(y, mx::subtract(g, mx::sum(mx::multiply(g, y), -1, true)))};
  }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const CpuMaskedSoftmax*>(&other);
    return o && o->queries_ == queries_ && o->key_start_ == key_start_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override { return {in[0].shape()}; }

 private:
  int queries_;
  std::vector<int> key_start_;
};

}  // namespace

bool attention_supported(const mx::array& q, const mx::array& k, const mx::array& v, bool single_query) {
  if (!available() || machine_isa() == Isa::portable || mx::default_device() != mx::Device::cpu) return false;
  if (q.dtype() != mx::float32 || k.dtype() != mx::float32 || v.dtype() != mx::float32) return false;
  if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4) return false;
  const int hq = q.shape(1), hk = k.shape(1);
  return (q.shape(2) > 1 || single_query) && hk > 0 && hq % hk == 0 && k.shape(2) >= q.shape(2) &&
         q.shape(3) == k.shape(3) && v.shape(1) == hk && v.shape(2) == k.shape(2) && q.shape(0) == k.shape(0);
}

mx::array attention(const mx::array& q, const mx::array& k, const mx::array& v, float scale, bool causal,
                    const std::vector<int>& key_start) {
  const int B = q.shape(0), tq = q.shape(2);
  if (!key_start.empty() && static_cast<int>(key_start.size()) != B)
    throw std::invalid_argument("[kernels] attention: one key start per batch entry");
  // One query per head (decode): a causal mask aligned to the last key hides nothing.
  if (tq == 1 && decode_attention_supported(q, k, v)) return decode_attention(q, k, v, scale, key_start);
  // A cache stored in another dtype (kv_cache_dtype): its rounded keys and values in the queries' dtype.
  if (k.dtype() != q.dtype() || v.dtype() != q.dtype())
    return attention(q, mx::astype(k, q.dtype()), mx::astype(v, q.dtype()), scale, causal, key_start);
  // A padded batch takes this path for single queries too: MLX's sdpa would need an explicit mask.
  if (!attention_supported(q, k, v, !key_start.empty())) {
    if (key_start.empty()) return mx::fast::scaled_dot_product_attention(q, k, v, scale, causal ? "causal" : "");
    const int tk = k.shape(2);
    auto start = mx::array(key_start.data(), {B, 1, 1, 1}, mx::int32);
    auto kj = mx::reshape(mx::arange(tk, mx::int32), {1, 1, 1, tk});
    auto mask = mx::greater_equal(kj, start);
    if (causal)
      mask = mx::logical_and(mask, mx::less_equal(kj, mx::reshape(mx::arange(tk - tq, tk, mx::int32), {1, 1, tq, 1})));
    return mx::fast::scaled_dot_product_attention(q, k, v, scale, "array", mask);
  }
  // Under a transformation (training's value_and_grad) the blocked route: the backward pass reuses its
  // products and softmax, where the tiles' vjp would compute the forward again (and training then
  // differentiates the very forward it ran).
  const bool traced = q.is_tracer() || k.is_tracer() || v.is_tracer();
  if (!traced && prefill_attention_supported(q, k, v)) return prefill_attention(q, k, v, scale, causal, key_start);
  return blocked_attention(q, k, v, scale, causal, key_start);
}

mx::array blocked_attention(const mx::array& q, const mx::array& k, const mx::array& v, float scale, bool causal,
                            const std::vector<int>& key_start) {
  const int B = q.shape(0), hq = q.shape(1), tq = q.shape(2), d = q.shape(3);
  const int hk = k.shape(1), rep = hq / hk, tk = k.shape(2);
  // Query blocks: the scores of a long prompt ([rep * Tq, Tk] per KV head) would be tens of MB per layer,
  // which every allocator hands back to the kernel when freed, so each layer page-faulted them in afresh
  // (most of a 2k-token prefill's time went to the kernel). Blocks keep every scores array near
  // kBlockBytes, and a causal block only multiplies the keys its last query sees.
  constexpr int64_t kBlockBytes = 2 << 20;
  const int64_t row_bytes = int64_t{B} * hq * tk * 4;
  const int qb = static_cast<int>(std::clamp<int64_t>(kBlockBytes / std::max<int64_t>(row_bytes, 1), 16, tq));
  auto qscaled = mx::multiply(q, mx::array(scale));
  std::vector<mx::array> outs;
  for (int t0 = 0; t0 < tq; t0 += qb) {
    const int t1 = std::min(tq, t0 + qb), n = t1 - t0;
    const int kend = causal ? tk - tq + t1 : tk;  // the block's last query sees keys < kend
    auto qblk = n == tq ? qscaled : mx::slice(qscaled, {0, 0, t0, 0}, {B, hq, t1, d});
    auto kblk = kend == tk ? k : mx::slice(k, {0, 0, 0, 0}, {B, hk, kend, d});
    auto vblk = kend == tk ? v : mx::slice(v, {0, 0, 0, 0}, {B, hk, kend, d});
    // Heads sharing a key head become extra rows: [B, Hk, rep * n, D].
    auto scores = mx::matmul(mx::reshape(qblk, {B, hk, rep * n, d}), mx::swapaxes(kblk, -1, -2));
    auto probs = mx::array(
        scores.shape(), mx::float32,
        std::make_shared<CpuMaskedSoftmax>(mx::default_stream(mx::Device::cpu), causal ? n : 0, key_start), {scores});
    outs.push_back(mx::reshape(mx::matmul(probs, vblk), {B, hq, n, d}));
  }
  return outs.size() == 1 ? outs[0] : mx::concatenate(outs, 2);
}

}  // namespace mlxgp::kernels
