// QuantizedKVCache and quantized attention, following mlx-lm 0.32's QuantizedKVCache and
// quantized_scaled_dot_product_attention operation for operation so the numbers match.
#include "mlxgp/quantized_kv_cache.h"

#include <algorithm>

#include <mlx/mlx.h>

#include "cache/row_padding.h"
#include <mlx/utils.h>

#include "mlxgp/error.h"

#include "kernels/kernels.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

mx::array prefix(const mx::array& a, int n) {
  auto stop = a.shape();
  stop[2] = n;
  return mx::slice(a, {0, 0, 0, 0}, stop);
}

QuantizedTensor prefix(const QuantizedTensor& q, int n) {
  return {prefix(q.data, n), prefix(q.scales, n), prefix(q.biases, n)};
}

QuantizedTensor quantize(const mx::array& x, int group_size, int bits) {
  auto q = mx::quantize(x, group_size, bits);
  return {q[0], q[1], q[2]};
}

// Zero-padded to capacity `cap` along axis 2 (mlx-lm expand_quant).
mx::array pad_to(const mx::array& a, int cap, std::optional<mx::Dtype> dtype = std::nullopt) {
  auto shape = a.shape();
  shape[2] = cap - a.shape(2);
  if (shape[2] <= 0) return a;
  return mx::concatenate({a, mx::zeros(shape, dtype.value_or(a.dtype()))}, 2);
}

mx::array write(const mx::array& buf, const mx::array& x, int from) {
  auto stop = buf.shape();
  stop[2] = from + x.shape(2);
  return mx::slice_update(buf, x, mx::Shape{0, 0, from, 0}, stop);
}

mx::array dequant(const QuantizedTensor& q, int group_size, int bits) {
  return mx::dequantize(q.data, q.scales, q.biases, group_size, bits);
}

}  // namespace

QuantizedKVCache::QuantizedKVCache(int group_size, int bits, int step)
    : group_size_(group_size), bits_(bits), step_(step) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8)
    fail("cache", "kv bits must be 2, 3, 4, 5, 6 or 8 (got " + std::to_string(bits) + ")");
  if (group_size != 32 && group_size != 64 && group_size != 128)
    fail("cache", "kv group size must be 32, 64 or 128 (got " + std::to_string(group_size) + ")");
  if (step < 1) fail("cache", "cache step must be positive");
}

std::unique_ptr<QuantizedKVCache> QuantizedKVCache::from_standard(const StandardKVCache& cache, int group_size,
                                                                  int bits) {
  auto q = std::make_unique<QuantizedKVCache>(group_size, bits);
  q->offset_ = cache.offset();
  q->left_padding_ = cache.left_padding();
  // mlx-lm quantizes the whole buffer, zero capacity included; quantization works per row of
  // head_dim, so quantizing only the stored rows gives the same values.
  if (auto kv = cache.fetch()) {
    if (kv->first.shape(3) % group_size != 0 || kv->second.shape(3) % group_size != 0)
      fail("cache", "head_dim " + std::to_string(kv->first.shape(3)) + " is not a multiple of kv group size " +
                        std::to_string(group_size));
    q->keys_ = quantize(kv->first, group_size, bits);
    q->values_ = quantize(kv->second, group_size, bits);
    q->exclusive_ = true;
  }
  return q;
}

std::pair<QuantizedTensor, QuantizedTensor> QuantizedKVCache::update_quantized(const mx::array& keys,
                                                                               const mx::array& values) {
  if (keys.ndim() != 4 || values.ndim() != 4 || keys.shape(2) != values.shape(2) || keys.shape(2) == 0 ||
      keys.shape(0) != values.shape(0) || keys.shape(1) != values.shape(1))
    fail("cache", "keys/values must be [B, heads, T >= 1, head_dim] with the same B, heads and T");
  if (keys.shape(3) % group_size_ != 0 || values.shape(3) % group_size_ != 0)
    fail("cache", "head_dim " + std::to_string(keys.shape(3)) + " is not a multiple of kv group size " +
                      std::to_string(group_size_));
  const int n = keys.shape(2), prev = offset_;
  // Packed width: D * bits / 32 uint32 per row (D is a multiple of the group size, so exact).
  auto packed = [&](int d) { return d * bits_ / 32; };
  if (keys_ && (keys_->data.shape(0) != keys.shape(0) || keys_->data.shape(1) != keys.shape(1) ||
                keys_->data.shape(3) != packed(keys.shape(3)) || values_->data.shape(3) != packed(values.shape(3))))
    fail("cache", "keys/values shape does not match the cached entries");
  if (!keys_ || prev + n > keys_->data.shape(2)) {
    const int new_steps = (step_ + n - 1) / step_ * step_;
    auto grow = [&](QuantizedTensor& t) {
      // mlx-lm: drop stale rows past the offset (after a trim), then append new_steps zero rows.
      if (prev % step_ != 0) t = prefix(t, prev);
      const int cap = t.data.shape(2) + new_steps;
      t = {pad_to(t.data, cap), pad_to(t.scales, cap), pad_to(t.biases, cap)};
    };
    if (keys_) {
      grow(*keys_);
      grow(*values_);
    } else {
      auto init = [&](const mx::array& like) {
        const int B = like.shape(0), H = like.shape(1), D = like.shape(3);
        return QuantizedTensor{mx::zeros({B, H, new_steps, packed(D)}, mx::uint32),
                               mx::zeros({B, H, new_steps, D / group_size_}, keys.dtype()),
                               mx::zeros({B, H, new_steps, D / group_size_}, keys.dtype())};
      };
      keys_ = init(keys);
      values_ = init(values);
    }
  }
  offset_ += n;
  auto qk = quantize(keys, group_size_, bits_), qv = quantize(values, group_size_, bits_);
  keys_ = QuantizedTensor{write(keys_->data, qk.data, prev), write(keys_->scales, qk.scales, prev),
                          write(keys_->biases, qk.biases, prev)};
  values_ = QuantizedTensor{write(values_->data, qv.data, prev), write(values_->scales, qv.scales, prev),
                            write(values_->biases, qv.biases, prev)};
  // The slice updates' results are this cache's alone; the views returned are read by this step's
  // attention, dispatched before any later write (as StandardKVCache::update).
  exclusive_ = true;
  return stored();
}

std::pair<QuantizedTensor, QuantizedTensor> QuantizedKVCache::stored() const {
  if (offset_ == keys_->data.shape(2)) return std::make_pair(*keys_, *values_);
  return std::make_pair(prefix(*keys_, offset_), prefix(*values_, offset_));
}

std::optional<std::pair<QuantizedTensor, QuantizedTensor>> QuantizedKVCache::fetch() const {
  if (!keys_) return std::nullopt;
  exclusive_ = false;
  return stored();
}

std::optional<QuantizedKVCache::Writable> QuantizedKVCache::writable(int t) {
  if (!keys_) return std::nullopt;
  if (t <= 0) fail("cache", "writable needs a positive number of positions");
  if (!exclusive_ || offset_ + t > keys_->data.shape(2)) {
    // The stored positions copied into new buffers with room for t more (the concatenation always has a
    // zero part: cap > offset_), which is also how shared buffers become this cache's own.
    const int cap = (offset_ + t + step_ - 1) / step_ * step_;
    auto own = [&](QuantizedTensor& q) {
      const QuantizedTensor p = prefix(q, offset_);
      q = {pad_to(p.data, cap), pad_to(p.scales, cap), pad_to(p.biases, cap)};
    };
    own(*keys_);
    own(*values_);
  }
  exclusive_ = true;
  return Writable{*keys_, *values_, offset_};
}

void QuantizedKVCache::advance(int t, const Writable& after) {
  if (t <= 0 || !keys_ || offset_ + t > keys_->data.shape(2)) fail("cache", "advance past the buffers' capacity");
  if (after.keys.data.shape() != keys_->data.shape() || after.values.data.shape() != values_->data.shape() ||
      after.slot != offset_)
    fail("cache", "advance with buffers other than writable()'s");
  *keys_ = after.keys;
  *values_ = after.values;
  offset_ += t;
}

std::pair<mx::array, mx::array> QuantizedKVCache::update(const mx::array& keys, const mx::array& values) {
  auto [k, v] = update_quantized(keys, values);
  return {dequant(k, group_size_, bits_), dequant(v, group_size_, bits_)};
}

int QuantizedKVCache::trim(int n) {
  if (n < 0) fail("cache", "cannot trim a negative number of positions");
  const int dropped = std::min(n, offset_);
  offset_ -= dropped;
  return dropped;
}

std::unique_ptr<KVCache> QuantizedKVCache::clone() const {
  auto c = std::make_unique<QuantizedKVCache>(group_size_, bits_, step_);
  c->offset_ = offset_;
  c->left_padding_ = left_padding_;
  c->keys_ = keys_;  // immutable MLX arrays: updates rebind, so sharing is safe
  c->values_ = values_;
  exclusive_ = false;  // c->exclusive_ is false too
  return c;
}

void QuantizedKVCache::select(const mx::array& batch_indices) {
  if (batch_indices.ndim() != 1 || batch_indices.size() == 0)
    fail("cache", "batch indices must be a non-empty 1-D array");
  if (!mx::issubdtype(batch_indices.dtype(), mx::integer)) fail("cache", "batch indices must be integers");
  if (!keys_) return;
  select_padding(batch_indices);
  auto idx = mx::astype(batch_indices, mx::int32);
  auto take = [&](const QuantizedTensor& t) {
    return QuantizedTensor{mx::take(t.data, idx, 0), mx::take(t.scales, idx, 0), mx::take(t.biases, idx, 0)};
  };
  keys_ = take(*keys_);
  values_ = take(*values_);
  exclusive_ = true;
}

namespace {

// x @ dequantize(t)^T (or x @ dequantize(t)): what quantized_matmul computes. MLX 0.32's CUDA backend has no
// quantized_matmul kernel for attention's shapes (for example "No implementation for problem shape:
// 1x13x64x9", measured on an H200 for every prompt), so on CUDA the cache is dequantized first; the CPU and
// Metal keep the fused op, as mlx-lm's quantized_scaled_dot_product_attention does.
mx::array cache_matmul(const mx::array& x, const QuantizedTensor& t, bool transpose, int group_size, int bits) {
  if (mx::default_device() == mx::Device::gpu && mx::cu::is_available()) {
    auto w = mx::astype(mx::dequantize(t.data, t.scales, t.biases, group_size, bits), x.dtype());
    return mx::matmul(x, transpose ? mx::swapaxes(w, -1, -2) : w);
  }
  return mx::quantized_matmul(x, t.data, t.scales, t.biases, transpose, group_size, bits);
}

}  // namespace

mx::array quantized_attention(const mx::array& queries, const QuantizedTensor& keys, const QuantizedTensor& values,
                              float scale, const AttentionMask& mask, int group_size, int bits) {
  const int B = queries.shape(0), n_q = queries.shape(1), L = queries.shape(2), D = queries.shape(3);
  const int n_kv = keys.data.shape(1);
  const int n_rep = n_q / n_kv;
  // One query without an array mask (decode; a batch's padding is its key starts): one CPU primitive that
  // reads the quantized rows and computes the same softmax(q k^T) v in float32 (the order of its sums
  // differs from quantized_matmul's, by rounding).
  if (L == 1 && mask.kind == AttentionMask::Kind::None) {
    const kernels::QuantizedArrays k{keys.data, keys.scales, keys.biases}, v{values.data, values.scales, values.biases};
    if (kernels::quantized_decode_attention_supported(queries, k, v, group_size, bits))
      return kernels::quantized_decode_attention(queries, k, v, scale, group_size, bits, mask.key_start);
  }
  // A prompt chunk (causal, or none; a batch's padding as key starts): the tiled prefill attention, each
  // tile of keys and values dequantized where it is used. MLX's CPU quantized_matmul runs these products on
  // one thread: a 2k-token prompt prefilled at 33 tok/s, against 1,289 with a standard cache (default
  // GGUF, int8 activations).
  if (L > 1 && mask.kind != AttentionMask::Kind::Array) {
    const kernels::QuantizedArrays k{keys.data, keys.scales, keys.biases}, v{values.data, values.scales, values.biases};
    if (kernels::quantized_prefill_attention_supported(queries, k, v, group_size, bits))
      return kernels::quantized_prefill_attention(queries, k, v, scale, mask.kind == AttentionMask::Kind::Causal,
                                                  group_size, bits, mask.key_start);
  }
  auto q = mx::multiply(queries, mx::array(scale, queries.dtype()));
  QuantizedTensor k = keys, v = values;
  if (n_rep > 1) {
    q = mx::reshape(q, {B, n_kv, n_rep, L, D});
    auto expand = [](const QuantizedTensor& t) {
      return QuantizedTensor{mx::expand_dims(t.data, -3), mx::expand_dims(t.scales, -3), mx::expand_dims(t.biases, -3)};
    };
    k = expand(keys);
    v = expand(values);
  }
  auto scores = cache_matmul(q, k, true, group_size, bits);
  std::optional<mx::array> m;
  if (!mask.key_start.empty()) {
    m = *mask.array;  // a left-padded batch: causal (or none) and each row's padding, [B, 1, L, keys]
    if (n_rep > 1) m = mx::expand_dims(*m, -3);
  } else if (mask.kind == AttentionMask::Kind::Causal) {
    // mlx-lm's string mask: query i sits at key position kL - qL + i.
    const int kL = scores.shape(-1), qL = scores.shape(-2);
    m = mx::greater_equal(mx::reshape(mx::arange(kL - qL, kL, mx::int32), {qL, 1}),
                          mx::reshape(mx::arange(kL, mx::int32), {1, kL}));
  } else if (mask.kind == AttentionMask::Kind::Array) {
    m = *mask.array;
    if (n_rep > 1 && m->ndim() > 3) m = mx::expand_dims(*m, -3);
  }
  if (m) {
    if (m->dtype() == mx::bool_)
      scores = mx::where(*m, scores, mx::array(mx::finfo(scores.dtype()).min, scores.dtype()));
    else scores = mx::add(scores, *m);
  }
  scores = mx::softmax(scores, std::vector<int>{-1}, true);
  auto out = cache_matmul(scores, v, false, group_size, bits);
  if (n_rep > 1) out = mx::reshape(out, {B, n_q, L, D});
  return out;
}

void QuantizedKVCache::append_rows(const QuantizedKVCache& other) {
  if (other.group_size_ != group_size_ || other.bits_ != bits_)
    fail("cache", "cannot append rows of a cache quantized differently");
  auto theirs = other.fetch();
  if (!theirs) fail("cache", "cannot append rows from an empty cache");
  auto mine = fetch();
  if (!mine) {
    offset_ = other.offset_;
    left_padding_ = other.left_padding_;
    keys_ = theirs->first;
    values_ = theirs->second;
    return;  // exclusive_ false (fetch): the other cache's buffers
  }
  const int len = std::max(offset_, other.offset_);
  join_padding(other, mine->first.data.shape(0), theirs->first.data.shape(0), len);
  // Zero positions on the left (data, scales and biases 0: they dequantize to 0 and are masked out).
  auto join = [&](const QuantizedTensor& a, const QuantizedTensor& b) {
    auto cat = [&](const mx::array& x, const mx::array& y) {
      return mx::concatenate({pad_front(x, len), pad_front(y, len)}, 0);
    };
    return QuantizedTensor{cat(a.data, b.data), cat(a.scales, b.scales), cat(a.biases, b.biases)};
  };
  keys_ = join(mine->first, theirs->first);
  values_ = join(mine->second, theirs->second);
  offset_ = len;
  exclusive_ = true;
}

void QuantizedKVCache::drop_leading(int n) {
  if (n <= 0) return;
  auto kv = fetch();
  if (!kv) fail("cache", "cannot drop positions of an empty cache");
  drop_padding(n);
  auto cut = [&](const QuantizedTensor& t) {
    return QuantizedTensor{cut_front(t.data, n), cut_front(t.scales, n), cut_front(t.biases, n)};
  };
  keys_ = cut(kv->first);
  values_ = cut(kv->second);
  offset_ -= n;
}

void maybe_quantize_kv_caches(KVCacheList& caches, int quantized_kv_start, int group_size, int bits) {
  for (auto& c : caches) {
    auto* std_cache = dynamic_cast<StandardKVCache*>(c.get());
    if (std_cache && std_cache->offset() >= quantized_kv_start)
      c = QuantizedKVCache::from_standard(*std_cache, group_size, bits);
  }
}

}  // namespace mlxgp
