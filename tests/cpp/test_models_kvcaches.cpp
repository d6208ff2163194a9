// RotatingKVCache (ring order, chunk trimming, masks, trim rules), QuantizedKVCache (packed sizes,
// round trip, growth, conversion from a standard cache), quantized attention and CacheOptions.
// The mlx-lm parity of both caches is in tests/parity/test_kv_caches.py.
#include <gtest/gtest.h>

#include <mlx/mlx.h>

#include "mlxgp/cache_options.h"
#include "mlxgp/error.h"
#include "mlxgp/loader.h"
#include "mlxgp/quantized_kv_cache.h"
#include "mlxgp/rotating_kv_cache.h"
#include "test_models_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using mlxgp::testing::max_abs_diff;

namespace {

// Host copy of any (possibly strided) array: a slice of a cache buffer is a view.
std::vector<float> to_vec(const mx::array& a) { return mlxgp::testing::to_vec(mx::contiguous(a)); }

// [1, 1, t, 2] whose rows hold their absolute position p (both elements), for positions [from, from+t).
mx::array rows(int from, int t) {
  auto p = mx::reshape(mx::arange(static_cast<float>(from), static_cast<float>(from + t), 1.0f), {1, 1, t, 1});
  return mx::broadcast_to(p, {1, 1, t, 2});
}

// The positions held by keys [1, 1, T, 2], in buffer order.
std::vector<int> positions(const mx::array& keys) {
  auto v = to_vec(mx::slice(keys, {0, 0, 0, 0}, {1, 1, keys.shape(2), 1}));
  return std::vector<int>(v.begin(), v.end());
}

std::vector<int> step(RotatingKVCache& c, int from, int t) {
  return positions(c.update(rows(from, t), rows(from, t)).first);
}

}  // namespace

TEST(RotatingKVCache, SingleTokensFormARingAfterTheKeptPositions) {
  RotatingKVCache c(6, 2);
  std::vector<int> last;
  for (int p = 0; p < 6; ++p) last = step(c, p, 1);
  EXPECT_EQ(last, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(step(c, 6, 1), (std::vector<int>{0, 1, 6, 3, 4, 5}));  // overwrites the oldest non-kept
  for (int p = 7; p < 10; ++p) last = step(c, p, 1);
  EXPECT_EQ(last, (std::vector<int>{0, 1, 6, 7, 8, 9}));
  EXPECT_EQ(step(c, 10, 1), (std::vector<int>{0, 1, 10, 7, 8, 9}));
  EXPECT_EQ(c.offset(), 11);
  EXPECT_EQ(c.size(), 6);
}

TEST(RotatingKVCache, ChunkRestoresTemporalOrderAndKeepsMaxSizeMinusOneOld) {
  RotatingKVCache c(6, 2);
  for (int p = 0; p < 11; ++p) step(c, p, 1);  // ring: [0 1 10 7 8 9]
  auto mask = c.make_mask(3);                  // decided before the chunk is stored
  EXPECT_EQ(step(c, 11, 3), (std::vector<int>{0, 1, 8, 9, 10, 11, 12, 13}));
  // Window mask over those 8 keys: query j (key index 5 + j) sees at most 6 keys ending at itself.
  ASSERT_EQ(mask.kind, AttentionMask::Kind::Array);
  ASSERT_EQ(mask.array->shape(), (mx::Shape{3, 8}));
  auto m = to_vec(mx::astype(*mask.array, mx::float32));
  for (int j = 0; j < 3; ++j)
    for (int r = 0; r < 8; ++r) EXPECT_EQ(m[j * 8 + r], (r <= 5 + j && r > j - 1) ? 1.0f : 0.0f) << j << "," << r;
  // The next single token first trims the buffer back to max_size, then wraps after `keep`.
  EXPECT_EQ(step(c, 14, 1), (std::vector<int>{0, 1, 14, 11, 12, 13}));
}

TEST(RotatingKVCache, MasksFollowMlxLm) {
  RotatingKVCache c(8, 4);
  EXPECT_EQ(c.make_mask(1).kind, AttentionMask::Kind::None);
  EXPECT_EQ(c.make_mask(8).kind, AttentionMask::Kind::Causal);  // fits the window
  EXPECT_EQ(c.make_mask(9).kind, AttentionMask::Kind::Array);
  step(c, 0, 5);
  EXPECT_EQ(c.make_mask(3).kind, AttentionMask::Kind::Causal);
  EXPECT_EQ(c.make_mask(4).kind, AttentionMask::Kind::Array);
  StandardKVCache s;
  EXPECT_EQ(s.make_mask(1).kind, AttentionMask::Kind::None);
  EXPECT_EQ(s.make_mask(100).kind, AttentionMask::Kind::Causal);
}

TEST(RotatingKVCache, TrimmableOnlyBeforeEviction) {
  RotatingKVCache c(6, 2);
  step(c, 0, 4);
  EXPECT_TRUE(c.is_trimmable());
  EXPECT_EQ(c.trim(2), 2);
  EXPECT_EQ(c.offset(), 2);
  EXPECT_EQ(step(c, 2, 1), (std::vector<int>{0, 1, 2}));  // overwrites the trimmed positions
  EXPECT_EQ(step(c, 3, 3), (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_FALSE(c.is_trimmable());
  EXPECT_EQ(c.trim(1), 0);
  EXPECT_EQ(c.offset(), 6);
  EXPECT_THROW(c.trim(-1), Error);
}

TEST(RotatingKVCache, CloneIsIndependentAndArgumentsAreChecked) {
  RotatingKVCache c(4, 1);
  step(c, 0, 3);
  auto d = c.clone();
  step(c, 3, 1);
  step(c, 4, 1);
  auto [k, v] = d->update(rows(30, 1), rows(30, 1));
  EXPECT_EQ(positions(k), (std::vector<int>{0, 1, 2, 30}));
  EXPECT_EQ(c.offset(), 5);
  EXPECT_THROW(RotatingKVCache(4, 4), Error);
  EXPECT_THROW(RotatingKVCache(0, 0), Error);
  EXPECT_THROW(c.update(mx::zeros({1, 1, 1, 3}), mx::zeros({1, 1, 1, 3})), Error);  // head_dim changed
}

TEST(QuantizedKVCache, StoresPackedRowsAndRoundTrips) {
  for (int bits : {4, 8}) {
    QuantizedKVCache c(32, bits);
    auto k = mx::random::normal({1, 2, 5, 64}, mx::float32, mx::random::key(1));
    auto v = mx::random::normal({1, 2, 5, 64}, mx::float32, mx::random::key(2));
    auto [dk, dv] = c.update(k, v);
    auto stored = c.fetch();
    ASSERT_TRUE(stored.has_value());
    EXPECT_EQ(stored->first.data.shape(), (mx::Shape{1, 2, 5, 64 * bits / 32}));
    EXPECT_EQ(stored->first.data.dtype(), mx::uint32);
    EXPECT_EQ(stored->first.scales.shape(), (mx::Shape{1, 2, 5, 2}));
    EXPECT_EQ(stored->second.biases.shape(), (mx::Shape{1, 2, 5, 2}));
    // Affine quantization error is at most half a step: range / (2^bits - 1) / 2 per group.
    const float bound = (bits == 4 ? 8.0f / 15 : 8.0f / 255);
    EXPECT_LT(max_abs_diff(dk, k), bound) << bits;
    EXPECT_LT(max_abs_diff(dv, v), bound) << bits;
    EXPECT_GT(max_abs_diff(dk, k), 0.0f);  // it really is quantized
  }
}

TEST(QuantizedKVCache, GrowsTrimsAndConvertsFromStandard) {
  QuantizedKVCache c(64, 4, 4);
  auto x = mx::random::normal({1, 1, 10, 64}, mx::float32, mx::random::key(3));
  c.update(mx::slice(x, {0, 0, 0, 0}, {1, 1, 3, 64}), mx::slice(x, {0, 0, 0, 0}, {1, 1, 3, 64}));
  auto mid = mx::slice(x, {0, 0, 3, 0}, {1, 1, 9, 64});
  c.update(mid, mid);  // grows past the step
  EXPECT_EQ(c.offset(), 9);
  EXPECT_EQ(c.trim(2), 2);
  auto [k, v] = c.update(mx::slice(x, {0, 0, 7, 0}, {1, 1, 10, 64}), mx::slice(x, {0, 0, 7, 0}, {1, 1, 10, 64}));
  EXPECT_EQ(k.shape(), (mx::Shape{1, 1, 10, 64}));
  EXPECT_LT(max_abs_diff(k, x), 8.0f / 15);
  // Quantizing a standard cache = quantizing what it holds.
  StandardKVCache s;
  s.update(x, x);
  KVCacheList caches;
  caches.push_back(s.clone());
  maybe_quantize_kv_caches(caches, 11, 64, 4);
  EXPECT_EQ(dynamic_cast<QuantizedKVCache*>(caches[0].get()), nullptr);  // offset 10 < start 11
  maybe_quantize_kv_caches(caches, 10, 64, 4);
  auto* q = dynamic_cast<QuantizedKVCache*>(caches[0].get());
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->offset(), 10);
  auto direct = mx::quantize(x, 64, 4);
  EXPECT_EQ(max_abs_diff(q->fetch()->first.scales, direct[1]), 0.0f);
  EXPECT_THROW(QuantizedKVCache(16, 4), Error);
  EXPECT_THROW(QuantizedKVCache(64, 7), Error);
  QuantizedKVCache bad(64, 4);
  EXPECT_THROW(bad.update(mx::zeros({1, 1, 1, 16}), mx::zeros({1, 1, 1, 16})), Error);
}

TEST(QuantizedKVCache, QuantizedAttentionEqualsSdpaOverDequantizedKeys) {
  // GQA (4 query heads on 2 kv heads) and a causal chunk on top of a non-empty cache.
  QuantizedKVCache c(32, 8);
  auto kv = mx::random::normal({1, 2, 7, 64}, mx::float32, mx::random::key(4));
  c.update(kv, kv);
  auto q = mx::random::normal({1, 4, 3, 64}, mx::float32, mx::random::key(5));
  auto stored = *c.fetch();
  auto deq = [](const QuantizedTensor& t) { return mx::dequantize(t.data, t.scales, t.biases, 32, 8); };
  for (auto kind : {AttentionMask::Kind::None, AttentionMask::Kind::Causal}) {
    auto got = quantized_attention(q, stored.first, stored.second, 0.125f, {kind, std::nullopt}, 32, 8);
    auto ref = mx::fast::scaled_dot_product_attention(q, deq(stored.first), deq(stored.second), 0.125f,
                                                      kind == AttentionMask::Kind::Causal ? "causal" : "");
    EXPECT_EQ(got.shape(), (mx::Shape{1, 4, 3, 64}));
    EXPECT_LT(max_abs_diff(got, ref), 1e-5f);
  }
}

TEST(KVCaches, SelectTilesBatchRows) {
  RotatingKVCache r(4, 1);
  r.update(rows(0, 3), rows(0, 3));
  r.select(mx::array({0, 0, 0}));
  auto [rk, rv] = r.update(mx::broadcast_to(rows(3, 1), {3, 1, 1, 2}), mx::broadcast_to(rows(3, 1), {3, 1, 1, 2}));
  EXPECT_EQ(rk.shape(), (mx::Shape{3, 1, 4, 2}));
  EXPECT_EQ(positions(mx::slice(rk, {2, 0, 0, 0}, {3, 1, 4, 2})), (std::vector<int>{0, 1, 2, 3}));
  QuantizedKVCache q(32, 8);
  auto x = mx::random::normal({2, 1, 3, 32}, mx::float32, mx::random::key(6));
  q.update(x, x);
  q.select(mx::array({1, 0, 1}));
  EXPECT_EQ(q.fetch()->first.data.shape(), (mx::Shape{3, 1, 3, 8}));
  auto row1 = mx::dequantize(q.fetch()->first.data, q.fetch()->first.scales, q.fetch()->first.biases, 32, 8);
  auto first = mx::slice(row1, {0, 0, 0, 0}, {1, 1, 3, 32});
  EXPECT_LT(max_abs_diff(first, mx::slice(x, {1, 0, 0, 0}, {2, 1, 3, 32})), 0.05f);
  EXPECT_THROW(q.select(mx::array({0.5f})), Error);
}

TEST(CacheOptions, ValidatesCombinations) {
  CacheOptions o;
  EXPECT_NO_THROW(validate(o));
  o.max_kv_size = 8;
  o.kv_keep = 8;
  EXPECT_THROW(validate(o), Error);
  o.kv_keep = 4;
  o.kv_bits = 4;
  EXPECT_THROW(validate(o), Error);  // rotating + quantized
  o.max_kv_size.reset();
  o.kv_group_size = 48;
  EXPECT_THROW(validate(o), Error);
  o.kv_group_size = 64;
  o.quantized_kv_start = -1;
  EXPECT_THROW(validate(o), Error);
  o.quantized_kv_start = 0;
  EXPECT_NO_THROW(validate(o));
  // kv_cache_dtype: a standard cache's dtype, by name; not with the rotating or quantized caches' own formats.
  CacheOptions d;
  d.kv_cache_dtype = "float16";
  EXPECT_NO_THROW(validate(d));
  EXPECT_EQ(*kv_storage_dtype(d), mx::float16);
  d.kv_cache_dtype = "half";
  EXPECT_THROW(validate(d), Error);
  d.kv_cache_dtype = "bfloat16";
  d.kv_bits = 8;
  EXPECT_THROW(validate(d), Error);
  d.kv_bits.reset();
  d.max_kv_size = 32;
  EXPECT_THROW(validate(d), Error);
}

TEST(KVCaches, StandardCacheStoresItsDtype) {
  // Keys are rounded as they are stored and handed back rounded; a clone, rows joined to an empty cache and
  // growth past the step keep the dtype; without one the cache takes its first keys' dtype.
  StandardKVCache c(4, mx::float16);
  auto k = mx::random::normal({2, 2, 3, 8}, mx::float32, 0.0f, 1.0f, mx::random::key(3));
  auto [keys, values] = c.update(k, k);
  EXPECT_EQ(keys.dtype(), mx::float16);
  EXPECT_TRUE(mx::array_equal(keys, mx::astype(k, mx::float16)).item<bool>());
  auto [k2, v2] = c.update(k, k);  // 6 positions: past the step of 4
  EXPECT_EQ(k2.dtype(), mx::float16);
  EXPECT_EQ(k2.shape(2), 6);
  auto copy = c.clone();
  EXPECT_EQ(
      copy->update(mx::slice(k, {0, 0, 0, 0}, {2, 2, 1, 8}), mx::slice(k, {0, 0, 0, 0}, {2, 2, 1, 8})).first.dtype(),
      mx::float16);
  StandardKVCache joined;
  joined.append_rows(c, 4);
  EXPECT_EQ(joined.fetch()->first.dtype(), mx::float16);
  EXPECT_EQ(
      joined.update(mx::slice(k, {0, 0, 0, 0}, {2, 2, 1, 8}), mx::slice(k, {0, 0, 0, 0}, {2, 2, 1, 8})).first.dtype(),
      mx::float16);
  StandardKVCache plain;
  EXPECT_EQ(plain.update(k, k).first.dtype(), mx::float32);
}

TEST(CacheOptions, MakeCachesForAModel) {
  // A rotating cache wider than the sequence is the standard cache; a narrow one changes the
  // logits once tokens are evicted; a quantized cache needs head_dim to be a multiple of the group.
  mlxgp::testing::TempDir t;
  auto loaded = load(mlxgp::testing::write_tiny_folder(t).string());
  auto& model = *loaded.model;
  std::vector<int> ids = {3, 9, 17, 4, 22, 41, 5, 8, 13, 30, 2, 7};
  auto run = [&](KVCacheList caches) {
    std::vector<mx::array> out;
    out.push_back(model.forward(mx::array(ids.data(), {1, 5}, mx::int32), caches));
    for (int i = 5; i < static_cast<int>(ids.size()); ++i)
      out.push_back(model.forward(mx::array(&ids[i], {1, 1}, mx::int32), caches));
    return mx::concatenate(out, 1);
  };
  auto plain = run(make_caches(model, CacheOptions{}));
  CacheOptions wide;
  wide.max_kv_size = 64;
  auto caches = make_caches(model, wide);
  ASSERT_EQ(caches.size(), 2u);
  ASSERT_NE(dynamic_cast<RotatingKVCache*>(caches[0].get()), nullptr);
  EXPECT_LT(max_abs_diff(run(std::move(caches)), plain), 1e-5f);
  CacheOptions narrow;
  narrow.max_kv_size = 6;
  auto small = run(make_caches(model, narrow));
  // Positions 0..5 fit in 6 slots; position 6 overwrites slot 4 (keep 4), evicting position 4.
  EXPECT_LT(max_abs_diff(mx::slice(small, {0, 0, 0}, {1, 6, 64}), mx::slice(plain, {0, 0, 0}, {1, 6, 64})), 1e-5f);
  EXPECT_GT(max_abs_diff(small, plain), 1e-3f);  // positions 6.. lost key 4 onwards
  CacheOptions quant;
  quant.kv_bits = 4;
  quant.kv_group_size = 32;
  EXPECT_THROW(run(make_caches(model, quant)), Error);  // tiny head_dim 8
}
