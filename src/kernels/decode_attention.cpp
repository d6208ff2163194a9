// mlxgp::kernels::decode_attention: one query per head against the KV cache, as one CPU primitive.
// The generic route builds about eight graph nodes per layer (scale, reshapes, two batched BLAS
// products of a few rows each, a softmax) and MLX's CPU sdpa is the same fallback; at decode, graph
// building and those small products cost more than the arithmetic. Here every (batch row, KV head)
// task reads its keys and values once, straight from the cache's strided view, for all the query heads
// that share them (GQA), with an AVX2 exp, on all threads.
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

#include "kernels/cpu_task.h"
#include "kernels/decode_attention.h"
#include "kernels/qmm_cpu.h"
#include "kernels/row_major.h"
#include "kernels/simd_exp.h"
#include "kernels/thread_pool.h"
#include "kernels/kernels.h"

namespace mx = mlx::core;

namespace mlxgp::kernels {

#if defined(__x86_64__)

namespace {

// Four dot products' lanes summed into their four totals, each in the order reduce8x8 below sums it
// (the key's lanes 0+1, 2+3 paired, then the two 128-bit halves), so both give the same bits.
MLXGP_SIMD_EXP_AVX2 inline __m128 reduce4x8(const __m256* a) {
  const __m256 lo = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  return _mm_add_ps(_mm256_castps256_ps128(lo), _mm256_extractf128_ps(lo, 1));
}

// Rows [j, j + n) of a head's keys (or values), D floats each, into L2 (prefetch.h's reason: a batch's
// KV cache streams from DRAM). Keys are asked for a few rows ahead of the scores, and the values of the
// same rows beside them, so the weighted sum that follows reads them from L2. Default GGUF, int8
// activations, batch 8, 256 new tokens: 394 -> 410 tok/s.
inline void prefetch_rows(const float* base, int64_t stride, int j, int n, int D) {
  for (int i = j; i < j + n; ++i)
    for (int d = 0; d < D; d += 16) _mm_prefetch(reinterpret_cast<const char*>(base + i * stride + d), _MM_HINT_T1);
}
constexpr int kKeysAhead = 32;

// scores_r[j] = scale * q_r . k_j for R query heads sharing one KV head (q_r D floats apart, scores_r Tk
// apart) over keys [lo, Tk). Each key chunk is loaded once for all R heads: loads from L2, not the
// multiply-adds, bounded the one-head-at-a-time loop. Per head the arithmetic is unchanged: blocks of
// eight keys from lo (two halves of four, reduce4x8), one lane vector per key, the rest one key at a
// time (hsum8). With `vb`, prefetches keys ahead and the values of the same positions (prefetch_rows).
template <int R>
MLXGP_SIMD_EXP_AVX2 void score_keys(const float* q, const float* kb, int64_t kstride, int lo, int Tk, int D,
                                    float scale, float* scores, const float* vb, int64_t vstride) {
  const __m256 vscale = _mm256_set1_ps(scale);
  int j = lo;
  if (vb) prefetch_rows(kb, kstride, j, std::min(kKeysAhead, Tk - j), D);
  for (; j + 8 <= Tk; j += 8) {
    if (vb) {
      if (j + kKeysAhead < Tk) prefetch_rows(kb, kstride, j + kKeysAhead, std::min(8, Tk - j - kKeysAhead), D);
      prefetch_rows(vb, vstride, j, 8, D);
    }
    for (int half = 0; half < 8; half += 4) {
      __m256 acc[R][4];
      for (int r = 0; r < R; ++r)
        for (int i = 0; i < 4; ++i) acc[r][i] = _mm256_setzero_ps();
      const float* k0 = kb + (j + half) * kstride;
      for (int d = 0; d < D; d += 8) {
        for (int i = 0; i < 4; ++i) {
          const __m256 kv = _mm256_loadu_ps(k0 + i * kstride + d);
          for (int r = 0; r < R; ++r) acc[r][i] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * D + d), kv, acc[r][i]);
        }
      }
      for (int r = 0; r < R; ++r)
        _mm_storeu_ps(scores + r * Tk + j + half, _mm_mul_ps(reduce4x8(acc[r]), _mm256_castps256_ps128(vscale)));
    }
  }
  for (; j < Tk; ++j) {
    for (int r = 0; r < R; ++r) {
      __m256 acc = _mm256_setzero_ps();
      for (int d = 0; d < D; d += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * D + d), _mm256_loadu_ps(kb + j * kstride + d), acc);
      scores[r * Tk + j] = simd::hsum8(acc) * scale;
    }
  }
}

// s[lo:Tk) <- exp(s - max); returns the sum (and the max in *max_out).
MLXGP_SIMD_EXP_AVX2 float exp_sum(float* s, int lo, int Tk, float* max_out = nullptr) {
  float m = -INFINITY;
  for (int j = lo; j < Tk; ++j) m = std::max(m, s[j]);
  const __m256 mv = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  int j = lo;
  for (; j + 8 <= Tk; j += 8) {
    const __m256 e = simd::exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
    _mm256_storeu_ps(s + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  float sum = simd::hsum8(acc);
  for (; j < Tk; ++j) sum += s[j] = std::exp(s[j] - m);
  if (max_out) *max_out = m;
  return sum;
}

// s[lo:Tk) <- exp(s - max); returns 1 / sum.
float exp_scores(float* s, int lo, int Tk) { return 1.0f / exp_sum(s, lo, Tk); }

// o_r[d0, d0 + 8 W) = inv_r * sum_j p_r[j] v_j[d0, ...) for R heads (p_r Tk apart, o_r D apart), the
// R x W accumulators in registers over the keys; each value chunk is loaded once for all R heads.
template <int R, int W>
MLXGP_SIMD_EXP_AVX2 void weighted_values(const float* p, int Tk, const float* vb, int64_t vstride, int lo, int d0,
                                         const float* inv, float* o, int D) {
  __m256 acc[R][W];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < W; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int j = lo; j < Tk; ++j) {
    const float* vj = vb + j * vstride + d0;
    __m256 v[W];
    for (int c = 0; c < W; ++c) v[c] = _mm256_loadu_ps(vj + 8 * c);
    for (int r = 0; r < R; ++r) {
      const __m256 pj = _mm256_set1_ps(p[r * Tk + j]);
      for (int c = 0; c < W; ++c) acc[r][c] = _mm256_fmadd_ps(pj, v[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const __m256 vinv = _mm256_set1_ps(inv[r]);
    for (int c = 0; c < W; ++c) _mm256_storeu_ps(o + r * D + d0 + 8 * c, _mm256_mul_ps(acc[r][c], vinv));
  }
}

// R query heads sharing a KV head: their scores in one pass over the keys, softmax each, their weighted
// sums in one pass over the values. `scores` holds R x Tk floats; `first`: this KV head's first group
// (the one that prefetches).
template <int R>
void head_group(const float* q, const float* kb, const float* vb, const int64_t* ks, const int64_t* vs, int lo, int Tk,
                int D, float scale, float* scores, float* o, bool first) {
  score_keys<R>(q, kb, ks[2], lo, Tk, D, scale, scores, first ? vb : nullptr, vs[2]);
  float inv[R];
  for (int r = 0; r < R; ++r) inv[r] = exp_scores(scores + r * Tk, lo, Tk);
  int d0 = 0;
  for (; d0 + 16 <= D; d0 += 16) weighted_values<R, 2>(scores, Tk, vb, vs[2], lo, d0, inv, o, D);
  for (; d0 < D; d0 += 8) weighted_values<R, 1>(scores, Tk, vb, vs[2], lo, d0, inv, o, D);
}

// Row b's first visible key (left padding hides those before it; a start past the end keeps the last key).
int first_key(const DecodeArgs& a, int b) {
  return a.key_start && !a.key_start->empty() ? std::clamp((*a.key_start)[b], 0, a.Tk - 1) : 0;
}

constexpr int kHeadsPerPass = 3;  // 3 heads x 4 keys of accumulators fill AVX2's 16 registers

// softmax(scale * q_r . k_j) over keys [lo, Tk), then the weighted sum of v_j, for the `rep` query
// heads of KV head h in batch row b, up to kHeadsPerPass at a time. `scores` holds 3 x Tk floats.
void decode_task(const DecodeArgs& a, int b, int h, float* scores) {
  const int rep = a.Hq / a.Hk, D = a.D, Tk = a.Tk;
  const int lo = first_key(a, b);
  const float* kb = a.k + b * a.ks[0] + h * a.ks[1];
  const float* vb = a.v + b * a.vs[0] + h * a.vs[1];
  for (int r0 = 0; r0 < rep; r0 += kHeadsPerPass) {
    const size_t row = static_cast<size_t>(b) * a.Hq + static_cast<size_t>(h) * rep + r0;
    const float* q = a.q + row * D;
    float* o = a.out + row * D;
    switch (std::min(kHeadsPerPass, rep - r0)) {
      case 3:
        head_group<3>(q, kb, vb, a.ks, a.vs, lo, Tk, D, a.scale, scores, o, r0 == 0);
        break;
      case 2:
        head_group<2>(q, kb, vb, a.ks, a.vs, lo, Tk, D, a.scale, scores, o, r0 == 0);
        break;
      default:
        head_group<1>(q, kb, vb, a.ks, a.vs, lo, Tk, D, a.scale, scores, o, r0 == 0);
    }
  }
}

// Long rows are split into chunks of keys (flash-decoding). One task per (row, KV head) left threads idle:
// SmolLM2 has 3 KV heads, so at batch 1 one of 2 threads ran two of them, and a task's 1 MB of keys and
// values at 2k positions no longer fit the L2 the values were prefetched into. Rows of at most
// kSplitFrom keys keep the single pass above, bit for bit. Chunks start at the row's first visible key,
// so a row splits the same way alone and in a left-padded batch (same bits either way).
constexpr int kSplitFrom = 512;
constexpr int kChunkKeys = 256;

int chunks_of(const DecodeArgs& a, int b) {
  const int lo = first_key(a, b);
  const int n = a.Tk - lo;
  return n > kSplitFrom ? (n + kChunkKeys - 1) / kChunkKeys : 0;
}

// Chunk [j0, j1) of R heads: unnormalised weighted values into part (R x D), each head's max and sum.
template <int R>
void chunk_group(const float* q, const float* kb, const float* vb, const int64_t* ks, const int64_t* vs, int j0, int j1,
                 int D, float scale, float* scores, float* part, float* m, float* sum) {
  const int n = j1 - j0;
  score_keys<R>(q, kb + j0 * ks[2], ks[2], 0, n, D, scale, scores, vb + j0 * vs[2], vs[2]);
  float ones[R];
  for (int r = 0; r < R; ++r) {
    sum[r] = exp_sum(scores + r * n, 0, n, m + r);
    ones[r] = 1.0f;
  }
  int d0 = 0;
  for (; d0 + 16 <= D; d0 += 16) weighted_values<R, 2>(scores, n, vb + j0 * vs[2], vs[2], 0, d0, ones, part, D);
  for (; d0 < D; d0 += 8) weighted_values<R, 1>(scores, n, vb + j0 * vs[2], vs[2], 0, d0, ones, part, D);
}

// Chunk c of (row b, KV head h) for all its query heads. part: [rep, D], m and sum: [rep].
void chunk_task(const DecodeArgs& a, int b, int h, int c, float* scores, float* part, float* m, float* sum) {
  const int rep = a.Hq / a.Hk, D = a.D;
  const int lo = first_key(a, b);
  const int j0 = lo + c * kChunkKeys, j1 = std::min(a.Tk, j0 + kChunkKeys);
  const float* kb = a.k + b * a.ks[0] + h * a.ks[1];
  const float* vb = a.v + b * a.vs[0] + h * a.vs[1];
  const float* q = a.q + (static_cast<size_t>(b) * a.Hq + static_cast<size_t>(h) * rep) * D;
  for (int r0 = 0; r0 < rep; r0 += kHeadsPerPass) {
    float* pr = part + static_cast<size_t>(r0) * D;
    switch (std::min(kHeadsPerPass, rep - r0)) {
      case 3:
        chunk_group<3>(q + r0 * D, kb, vb, a.ks, a.vs, j0, j1, D, a.scale, scores, pr, m + r0, sum + r0);
        break;
      case 2:
        chunk_group<2>(q + r0 * D, kb, vb, a.ks, a.vs, j0, j1, D, a.scale, scores, pr, m + r0, sum + r0);
        break;
      default:
        chunk_group<1>(q + r0 * D, kb, vb, a.ks, a.vs, j0, j1, D, a.scale, scores, pr, m + r0, sum + r0);
    }
  }
}

// Softmax over all chunks from their maxima and sums, chunk by chunk in order: out_r = sum_c w_c part_c /
// sum_c w_c sum_c with w_c = exp(m_c - max_c m_c).
void combine_chunks(const float* part, const float* m, const float* sum, int chunks, int rep, int D, float* out) {
  for (int r = 0; r < rep; ++r) {
    float top = -INFINITY;
    for (int c = 0; c < chunks; ++c) top = std::max(top, m[c * rep + r]);
    float total = 0.0f;
    for (int d = 0; d < D; ++d) out[r * D + d] = 0.0f;
    for (int c = 0; c < chunks; ++c) {
      const float w = std::exp(m[c * rep + r] - top);
      total += w * sum[c * rep + r];
      const float* pc = part + (static_cast<size_t>(c) * rep + r) * D;
      for (int d = 0; d < D; ++d) out[r * D + d] += w * pc[d];
    }
    const float inv = 1.0f / total;
    for (int d = 0; d < D; ++d) out[r * D + d] *= inv;
  }
}

}  // namespace

void decode_attention_rows(const DecodeArgs& a, int B) {
  const int rep = a.Hq / a.Hk;  // work per (row, KV head) and key
  int slots = 0;                // chunk results to keep: one per (row, KV head, chunk) of the long rows
  for (int b = 0; b < B; ++b) slots += chunks_of(a, b) * a.Hk;
  if (slots == 0) {
    parallel_rows(B * a.Hk, a.Tk * a.D * rep * 2, [&](int t0, int t1) {
      std::vector<float> scores(static_cast<size_t>(kHeadsPerPass) * a.Tk);
      for (int t = t0; t < t1; ++t) decode_task(a, t / a.Hk, t % a.Hk, scores.data());
    });
    return;
  }
  // Tasks: one per (row, KV head) of a short row, one per chunk of a long one.
  struct Task {
    int b, h, c;  // c < 0: the whole row (decode_task)
  };
  std::vector<Task> tasks;
  std::vector<int> first(B, 0), chunks(B, 0);  // per row: its first chunk slot, its chunk count
  for (int b = 0, slot = 0; b < B; ++b) {
    chunks[b] = chunks_of(a, b);
    first[b] = slot;
    slot += chunks[b] * a.Hk;
    for (int h = 0; h < a.Hk; ++h) {
      if (chunks[b] == 0) tasks.push_back({b, h, -1});
      for (int c = 0; c < chunks[b]; ++c) tasks.push_back({b, h, c});
    }
  }
  // Slot (row b, head h, chunk c) = first[b] + h * chunks[b] + c.
  std::vector<float> part(static_cast<size_t>(slots) * rep * a.D), m(static_cast<size_t>(slots) * rep), sum(m.size());
  const int n_tasks = static_cast<int>(tasks.size());
  parallel_rows(n_tasks, std::min(a.Tk, kSplitFrom) * a.D * rep * 2, [&](int t0, int t1) {
    std::vector<float> scores(static_cast<size_t>(kHeadsPerPass) * std::max(a.Tk, kChunkKeys));
    for (int t = t0; t < t1; ++t) {
      const Task& k = tasks[t];
      if (k.c < 0) {
        decode_task(a, k.b, k.h, scores.data());
        continue;
      }
      const size_t slot = static_cast<size_t>(first[k.b]) + static_cast<size_t>(k.h) * chunks[k.b] + k.c;
      chunk_task(a, k.b, k.h, k.c, scores.data(), part.data() + slot * rep * a.D, m.data() + slot * rep,
                 sum.data() + slot * rep);
    }
  });
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < a.Hk && chunks[b] > 0; ++h) {
      const size_t slot = static_cast<size_t>(first[b]) + static_cast<size_t>(h) * chunks[b];
      combine_chunks(part.data() + slot * rep * a.D, m.data() + slot * rep, sum.data() + slot * rep, chunks[b], rep,
                     a.D, a.out + (static_cast<size_t>(b) * a.Hq + static_cast<size_t>(h) * rep) * a.D);
    }
}
#else  // x86-64 only (AVX2): decode_attention_supported() is false elsewhere, so this is never reached
void decode_attention_rows(const DecodeArgs&, int) {
  throw std::logic_error("[kernels] decode attention runs on x86-64 only");
}
#endif

namespace {

void run_decode(const mx::array& q, const mx::array& k, const mx::array& v, mx::array& out, float scale,
                const std::vector<int>& key_start) {
  RowMajor<float> qr(q);
  const KvRows kr(k), vr(v);
  DecodeArgs a;
  a.Hq = q.shape(1);
  a.Hk = k.shape(1);
  a.Tk = k.shape(2);
  a.D = q.shape(3);
  a.q = qr.ptr;
  a.out = out.data<float>();
  a.scale = scale;
  a.key_start = &key_start;
  a.k = kr.p;
  a.v = vr.p;
  std::copy(kr.st, kr.st + 3, a.ks);
  std::copy(vr.st, vr.st + 3, a.vs);
  decode_attention_rows(a, q.shape(0));
}

// The same function in MLX ops, for gradients (decode is not trained through, but transforms must work).
mx::array reference(const mx::array& q, const mx::array& k, const mx::array& v, float scale,
                    const std::vector<int>& key_start) {
  const int B = q.shape(0), hq = q.shape(1), d = q.shape(3), hk = k.shape(1), tk = k.shape(2);
  auto qs = mx::reshape(mx::multiply(q, mx::array(scale)), {B, hk, hq / hk, d});
  auto s = mx::matmul(qs, mx::swapaxes(k, -1, -2));  // [B, Hk, rep, Tk]
  if (!key_start.empty()) {
    auto start = mx::array(key_start.data(), {B, 1, 1, 1}, mx::int32);
    auto visible =
        mx::greater_equal(mx::reshape(mx::arange(tk, mx::int32), {1, 1, 1, tk}), mx::minimum(start, mx::array(tk - 1)));
    s = mx::where(visible, s, mx::array(-INFINITY));
  }
  return mx::reshape(mx::matmul(mx::softmax(s, -1, true), v), {B, hq, 1, d});
}

class CpuDecodeAttention : public mx::UnaryPrimitive {
 public:
  CpuDecodeAttention(mx::Stream s, float scale, std::vector<int> key_start)
      : mx::UnaryPrimitive(s), scale_(scale), key_start_(std::move(key_start)) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      return [q = mx::array::unsafe_weak_copy(in[0]), k = mx::array::unsafe_weak_copy(in[1]),
              v = mx::array::unsafe_weak_copy(in[2]), o = mx::array::unsafe_weak_copy(out), scale = scale_,
              starts = key_start_]() mutable { run_decode(q, k, v, o, scale, starts); };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] the custom decode attention runs on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuDecodeAttention"; }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    auto f = [this](const std::vector<mx::array>& in) {
      return std::vector<mx::array>{reference(in[0], in[1], in[2], scale_, key_start_)};
    };
    auto grads = mx::vjp(f, primals, cotangents).second;
    std::vector<mx::array> picked;
    for (int i : argnums) picked.push_back(grads[i]);
    return picked;
  }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const CpuDecodeAttention*>(&other);
    return o && o->scale_ == scale_ && o->key_start_ == key_start_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override { return {in[0].shape()}; }

 private:
  float scale_;
  std::vector<int> key_start_;
};

}  // namespace

bool decode_attention_supported(const mx::array& q, const mx::array& k, const mx::array& v) {
  if (!available() || machine_isa() == Isa::portable || mx::default_device() != mx::Device::cpu) return false;
  if (q.dtype() != mx::float32 || k.dtype() != mx::float32 || v.dtype() != mx::float32) return false;
  if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4 || q.shape(2) != 1) return false;
  const int hq = q.shape(1), hk = k.shape(1), d = q.shape(3);
  return hk > 0 && hq % hk == 0 && d % 8 == 0 && k.shape(2) >= 1 && k.shape(3) == d && v.shape(3) == d &&
         v.shape(1) == hk && v.shape(2) == k.shape(2) && q.shape(0) == k.shape(0) && v.shape(0) == k.shape(0);
}

mx::array decode_attention(const mx::array& q, const mx::array& k, const mx::array& v, float scale,
                           const std::vector<int>& key_start) {
  if (!key_start.empty() && static_cast<int>(key_start.size()) != q.shape(0))
    throw std::invalid_argument("[kernels] decode attention: one key start per batch entry");
  return mx::array(q.shape(), mx::float32,
                   std::make_shared<CpuDecodeAttention>(mx::default_stream(mx::Device::cpu), scale, key_start),
                   {q, k, v});
}

}  // namespace mlxgp::kernels
