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

#include "kernels/aligned.h"
#include "kernels/cpu_task.h"
#include "kernels/decode_attention.h"
#include "kernels/decode_heads.h"
#include "kernels/qmm_cpu.h"
#include "kernels/row_major.h"
#include "kernels/simd_exp.h"
#include "kernels/thread_pool.h"
#include "kernels/kernels.h"

namespace mx = mlx::core;

namespace mlxgp::kernels {

#if defined(__x86_64__)

namespace {

using namespace decode_heads;

constexpr int kHeadsPerPass = 3;  // 3 heads x 4 keys of accumulators fill AVX2's 16 registers
// A quantized cache's keys (then values) are dequantized this many at a time into a buffer that stays in
// L1 between the dequantization and the arithmetic (8 KB at head_dim 64). Dequantizing a task's whole rows
// first wrote and re-read up to 300 KB through L2: the stores were the hot spot at 4 bits.
constexpr int kTileKeys = 32;
#define MLXGP_HALF_ROWS __attribute__((target("avx2,fma,f16c")))

// A thread's buffers: scores, and a tile of dequantized keys or values. Kept between calls: allocating
// (and zeroing) them per call cost 2% of a batch-8 decode with a quantized cache.
struct Scratch {
  AlignedVector<float> scores, tile;  // 64-byte aligned: the tile's 32-byte stores never split a line
  static Scratch& of_thread(size_t scores, size_t tile) {
    thread_local Scratch s;
    if (s.scores.size() < scores) s.scores.resize(scores);
    if (s.tile.size() < tile) s.tile.resize(tile);
    return s;
  }
};

// R query heads sharing KV head h of batch row b over keys [j0, j0 + n): their scores in one pass over the
// keys, softmax each, their weighted sums in one pass over the values. Into o (R x D): the attention
// output, or for a chunk of a long row (m and sum given) the unnormalised weighted sum with each head's
// max and sum. A float cache is read in place (`prefetch`: this group asks for the rows ahead); a
// quantized one tile by tile, which gives the same sums in the same order as its rows dequantized whole.
// The scratch's scores hold R x n floats.
// Rows [j0, j1) of (b, h) of a float16 cache (rows st[2] halves apart) as floats into out[(j - j0) * D + d],
// asking for the rows a tile ahead up to `ahead_end` (dequantize_rows' reason: short streams per task).
MLXGP_HALF_ROWS void half_rows(const uint16_t* base, const int64_t* st, int b, int h, int j0, int j1, int D, float* out,
                               int ahead_end) {
  const uint16_t* p = base + b * st[0] + h * st[1];
  for (int j = j0; j < j1; ++j) {
    if (j + kTileKeys < ahead_end)
      for (int d = 0; d < D; d += 32)
        _mm_prefetch(reinterpret_cast<const char*>(p + (j + kTileKeys) * st[2] + d), _MM_HINT_T0);
    const uint16_t* row = p + j * st[2];
    float* o = out + static_cast<size_t>(j - j0) * D;
    for (int d = 0; d < D; d += 8)
      _mm256_storeu_ps(o + d, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + d))));
  }
}

// Keys (or values) [j0, j1) of (b, h) of a tiled cache (quantized or float16) as floats into out.
void tile_rows(const DecodeArgs& a, bool keys, int b, int h, int j0, int j1, float* out, int ahead_end) {
  if (a.qk) return dequantize_rows(keys ? *a.qk : *a.qv, b, h, j0, j1, a.D, out, ahead_end);
  half_rows(keys ? a.k16 : a.v16, keys ? a.ks : a.vs, b, h, j0, j1, a.D, out, ahead_end);
}

// R query heads sharing KV head h of batch row b over keys [j0, j0 + n): their scores in one pass over the
// keys, softmax each, their weighted sums in one pass over the values. Into o (R x D): the attention
// output, or for a chunk of a long row (m and sum given) the unnormalised weighted sum with each head's
// max and sum. A float cache is read in place (`prefetch`: this group asks for the rows ahead); a
// quantized or float16 one tile by tile, which gives the same sums in the same order as its rows converted
// whole. The scratch's scores hold R x n floats.
template <int R>
void head_group(const DecodeArgs& a, const float* q, int b, int h, int j0, int n, bool prefetch, Scratch& s, float* o,
                float* m, float* sum) {
  const int D = a.D;
  float* scores = s.scores.data();
  const float* vb = nullptr;
  const bool tiled = a.qk || a.k16;
  if (!tiled) {
    const float* kb = a.k + b * a.ks[0] + h * a.ks[1] + j0 * a.ks[2];
    vb = a.v + b * a.vs[0] + h * a.vs[1] + j0 * a.vs[2];
    score_keys<R>(q, kb, a.ks[2], n, D, a.scale, scores, n, prefetch ? vb : nullptr, a.vs[2]);
  } else {
    if (a.qk) {
      prefetch_quantized_rows(*a.qk, b, h, j0, j0 + n, D);
      prefetch_quantized_rows(*a.qv, b, h, j0, j0 + n, D);
    }
    for (int t = 0; t < n; t += kTileKeys) {
      const int tn = std::min(kTileKeys, n - t);
      tile_rows(a, true, b, h, j0 + t, j0 + t + tn, s.tile.data(), j0 + n);
      score_keys<R>(q, s.tile.data(), D, tn, D, a.scale, scores + t, n, nullptr, 0);
    }
  }
  float mult[R];
  for (int r = 0; r < R; ++r) {
    if (m) {
      sum[r] = exp_sum(scores + r * n, n, m + r);
      mult[r] = 1.0f;
    } else {
      mult[r] = 1.0f / exp_sum(scores + r * n, n);
    }
  }
  if (!tiled) {
    add_weighted_rows<R>(scores, n, n, vb, a.vs[2], o, D, true);
  } else {
    for (int t = 0; t < n; t += kTileKeys) {
      const int tn = std::min(kTileKeys, n - t);
      tile_rows(a, false, b, h, j0 + t, j0 + t + tn, s.tile.data(), j0 + n);
      add_weighted_rows<R>(scores + t, n, tn, s.tile.data(), D, o, D, t == 0);
    }
  }
  if (!m) scale_rows<R>(o, mult, o, D);
}

// Heads [r0, r0 + count) of KV head h's group, count <= kHeadsPerPass.
void heads(const DecodeArgs& a, const float* q, int count, int b, int h, int j0, int n, bool prefetch, Scratch& s,
           float* o, float* m, float* sum) {
  switch (count) {
    case 3:
      return head_group<3>(a, q, b, h, j0, n, prefetch, s, o, m, sum);
    case 2:
      return head_group<2>(a, q, b, h, j0, n, prefetch, s, o, m, sum);
    default:
      return head_group<1>(a, q, b, h, j0, n, prefetch, s, o, m, sum);
  }
}

// Row b's first visible key (left padding hides those before it; a start past the end keeps the last key).
int first_key(const DecodeArgs& a, int b) {
  return a.key_start && !a.key_start->empty() ? std::clamp((*a.key_start)[b], 0, a.Tk - 1) : 0;
}

// softmax(scale * q_r . k_j) over keys [lo, Tk), then the weighted sum of v_j, for the `rep` query
// heads of KV head h in batch row b, up to kHeadsPerPass at a time (the keys counted from lo: the same
// blocks of eight and sums as from index lo). The scratch's scores hold 3 x Tk floats.
void decode_task(const DecodeArgs& a, int b, int h, Scratch& s) {
  const int rep = a.Hq / a.Hk, D = a.D;
  const int lo = first_key(a, b);
  for (int r0 = 0; r0 < rep; r0 += kHeadsPerPass) {
    const size_t row = static_cast<size_t>(b) * a.Hq + static_cast<size_t>(h) * rep + r0;
    heads(a, a.q + row * D, std::min(kHeadsPerPass, rep - r0), b, h, lo, a.Tk - lo, r0 == 0, s, a.out + row * D,
          nullptr, nullptr);
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

// Chunk c of (row b, KV head h) for all its query heads: unnormalised weighted values into part [rep, D],
// each head's max and sum into m and sum [rep]. Every group prefetches its chunk's rows.
void chunk_task(const DecodeArgs& a, int b, int h, int c, Scratch& s, float* part, float* m, float* sum) {
  const int rep = a.Hq / a.Hk, D = a.D;
  const int j0 = first_key(a, b) + c * kChunkKeys, j1 = std::min(a.Tk, j0 + kChunkKeys);
  const float* q = a.q + (static_cast<size_t>(b) * a.Hq + static_cast<size_t>(h) * rep) * D;
  for (int r0 = 0; r0 < rep; r0 += kHeadsPerPass)
    heads(a, q + r0 * D, std::min(kHeadsPerPass, rep - r0), b, h, j0, j1 - j0, true, s,
          part + static_cast<size_t>(r0) * D, m + r0, sum + r0);
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
      Scratch& s = Scratch::of_thread(static_cast<size_t>(kHeadsPerPass) * a.Tk, kTileKeys * a.D);
      for (int t = t0; t < t1; ++t) decode_task(a, t / a.Hk, t % a.Hk, s);
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
    Scratch& s = Scratch::of_thread(static_cast<size_t>(kHeadsPerPass) * std::max(a.Tk, kChunkKeys), kTileKeys * a.D);
    for (int t = t0; t < t1; ++t) {
      const Task& k = tasks[t];
      if (k.c < 0) {
        decode_task(a, k.b, k.h, s);
        continue;
      }
      const size_t slot = static_cast<size_t>(first[k.b]) + static_cast<size_t>(k.h) * chunks[k.b] + k.c;
      chunk_task(a, k.b, k.h, k.c, s, part.data() + slot * rep * a.D, m.data() + slot * rep, sum.data() + slot * rep);
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
  a.k16 = kr.half;
  a.v16 = vr.half;
  std::copy(kr.st, kr.st + 3, a.ks);
  std::copy(vr.st, vr.st + 3, a.vs);
  decode_attention_rows(a, q.shape(0));
}

// The quantized form: in = {q, keys' data, scales, biases, values' data, scales, biases}.
void run_quantized_decode(const std::vector<mx::array>& in, mx::array& out, float scale,
                          const std::vector<int>& key_start, int bits, int group) {
  RowMajor<float> qr(in[0]);
  const QuantizedRows qk = quantized_rows(&in[1], bits, group), qv = quantized_rows(&in[4], bits, group);
  DecodeArgs a;
  a.Hq = in[0].shape(1);
  a.Hk = in[1].shape(1);
  a.Tk = in[1].shape(2);
  a.D = in[0].shape(3);
  a.q = qr.ptr;
  a.out = out.data<float>();
  a.scale = scale;
  a.key_start = &key_start;
  a.qk = &qk;
  a.qv = &qv;
  decode_attention_rows(a, in[0].shape(0));
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

// bits 0: a float cache (inputs q, k, v); otherwise a quantized one (run_quantized_decode's inputs).
class CpuDecodeAttention : public mx::UnaryPrimitive {
 public:
  CpuDecodeAttention(mx::Stream s, float scale, std::vector<int> key_start, int bits = 0, int group = 0)
      : mx::UnaryPrimitive(s), scale_(scale), key_start_(std::move(key_start)), bits_(bits), group_(group) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    enqueue_cpu(stream(), in, out, [&] {
      return [in = weak_copies(in), o = mx::array::unsafe_weak_copy(out), scale = scale_, starts = key_start_,
              bits = bits_, group = group_]() mutable {
        if (bits) run_quantized_decode(in, o, scale, starts, bits, group);
        else run_decode(in[0], in[1], in[2], o, scale, starts);
      };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] the custom decode attention runs on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuDecodeAttention"; }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    if (bits_)  // callers keep traced attention on the MLX ops (quantized_decode_attention_supported)
      throw std::invalid_argument("[kernels] quantized decode attention is not differentiable");
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
    return o && o->scale_ == scale_ && o->key_start_ == key_start_ && o->bits_ == bits_ && o->group_ == group_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override { return {in[0].shape()}; }

 private:
  float scale_;
  std::vector<int> key_start_;
  int bits_, group_;
};

}  // namespace

bool decode_attention_supported(const mx::array& q, const mx::array& k, const mx::array& v) {
  if (!available() || machine_isa() == Isa::portable || mx::default_device() != mx::Device::cpu) return false;
  // Keys and values as floats, or float16 halves (a kv_cache_dtype float16 cache), converted tile by tile.
  if (q.dtype() != mx::float32 || k.dtype() != v.dtype() || (k.dtype() != mx::float32 && k.dtype() != mx::float16))
    return false;
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

QuantizedRows quantized_rows(const mx::array* t, int bits, int group) {
  QuantizedRows r;
  r.data = t[0].data<uint32_t>();
  r.scales = t[1].data<float>();
  r.biases = t[2].data<float>();
  for (int i = 0; i < 3; ++i) {
    r.ds[i] = t[0].strides()[i];
    r.ss[i] = t[1].strides()[i];
    r.bs[i] = t[2].strides()[i];
  }
  r.bits = bits;
  r.group = group;
  return r;
}

bool quantized_attention_inputs_ok(const mx::array& q, const QuantizedArrays& k, const QuantizedArrays& v,
                                   int group_size, int bits) {
  if (!available() || machine_isa() == Isa::portable || mx::default_device() != mx::Device::cpu) return false;
  if (!quantized_rows_bits_supported(bits) || group_size < 8 || group_size % 8 != 0) return false;
  if (q.dtype() != mx::float32 || q.ndim() != 4 || q.shape(2) < 1 || q.is_tracer()) return false;
  const int B = q.shape(0), hq = q.shape(1), d = q.shape(3);
  if (d % 8 != 0 || d % group_size != 0) return false;
  const mx::array* parts[] = {&k.data, &k.scales, &k.biases, &v.data, &v.scales, &v.biases};
  const int hk = k.data.shape(1), tk = k.data.shape(2);
  for (int i = 0; i < 6; ++i) {
    const mx::array& t = *parts[i];
    const bool data = i % 3 == 0;
    if (t.ndim() != 4 || t.shape(0) != B || t.shape(1) != hk || t.shape(2) != tk ||
        (t.shape(3) > 1 && t.strides()[3] != 1) || t.is_tracer())
      return false;
    if (t.dtype() != (data ? mx::uint32 : mx::float32) || t.shape(3) != (data ? d * bits / 32 : d / group_size))
      return false;
  }
  return hk > 0 && hq % hk == 0 && tk >= q.shape(2);
}

bool quantized_decode_attention_supported(const mx::array& q, const QuantizedArrays& k, const QuantizedArrays& v,
                                          int group_size, int bits) {
  return q.ndim() == 4 && q.shape(2) == 1 && quantized_attention_inputs_ok(q, k, v, group_size, bits);
}

mx::array quantized_decode_attention(const mx::array& q, const QuantizedArrays& k, const QuantizedArrays& v,
                                     float scale, int group_size, int bits, const std::vector<int>& key_start) {
  if (!key_start.empty() && static_cast<int>(key_start.size()) != q.shape(0))
    throw std::invalid_argument("[kernels] decode attention: one key start per batch entry");
  return mx::array(
      q.shape(), mx::float32,
      std::make_shared<CpuDecodeAttention>(mx::default_stream(mx::Device::cpu), scale, key_start, bits, group_size),
      {q, k.data, k.scales, k.biases, v.data, v.scales, v.biases});
}

}  // namespace mlxgp::kernels
