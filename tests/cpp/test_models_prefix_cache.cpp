// The prefix cache's LRU (prefix_cache.h): the longest common prefix wins and is cut to leave the last
// prompt token, entries are evicted least recently used first within the byte budget (sum of the stored
// arrays' nbytes), sequences that extend others replace them, and copy_row takes a batch row without
// its left padding.
#include <gtest/gtest.h>

#include "mlxgp/batch_cache.h"
#include "mlxgp/prefix_cache.h"
#include "mlxgp/rotating_kv_cache.h"
#include "test_models_util.h"

namespace mx = mlx::core;

namespace mlxgp::testing {
namespace {

constexpr int kLayers = 2, kHeads = 2, kDim = 4;
constexpr std::size_t kTokenBytes = kLayers * 2 * kHeads * kDim * sizeof(float);  // keys + values, every layer

// Keys/values whose value at position p of layer l is l * 1000 + p (+ 0.5 for values), so a copy shows
// which positions it holds.
std::vector<LayerKV> kv_of(int tokens) {
  std::vector<LayerKV> out;
  for (int l = 0; l < kLayers; ++l) {
    auto pos = mx::reshape(mx::astype(mx::arange(tokens), mx::float32), {1, 1, tokens, 1});
    auto k = mx::broadcast_to(mx::add(pos, mx::array(l * 1000.0f)), {1, kHeads, tokens, kDim});
    out.emplace_back(mx::contiguous(k), mx::contiguous(mx::add(k, mx::array(0.5f))));
  }
  return out;
}

std::vector<int> seq(int n, int first = 1) {
  std::vector<int> s;
  for (int i = 0; i < n; ++i) s.push_back(first + i);
  return s;
}

// The stored positions a hit's layer-l cache holds (read from its keys' first head and dimension).
std::vector<float> positions(const KVCacheList& caches, int layer) {
  auto kv = dynamic_cast<const StandardKVCache&>(*caches.at(layer)).fetch();
  return to_vec(mx::contiguous(mx::slice(kv->first, {0, 0, 0, 0}, {1, 1, kv->first.shape(2), 1})));
}

TEST(PrefixCache, LongestCommonPrefixLeavesTheLastPromptToken) {
  PrefixCache cache(1 << 20);
  EXPECT_TRUE(cache.insert(seq(6), kv_of(6), "m"));           // 1..6
  EXPECT_TRUE(cache.insert({1, 2, 9, 9}, kv_of(4), "m"));     // shares 2 with 1..6
  EXPECT_TRUE(cache.insert({1, 2, 3, 7, 7}, kv_of(5), "m"));  // shares 3 with 1..6

  // A prompt extending 1..6: the longest entry, all of it.
  auto hit = cache.lookup({1, 2, 3, 4, 5, 6, 40, 41}, "m");
  EXPECT_EQ(hit.tokens, 6);
  ASSERT_EQ(hit.caches.size(), static_cast<size_t>(kLayers));
  EXPECT_EQ(hit.caches[0]->offset(), 6);
  EXPECT_EQ(positions(hit.caches, 1), (std::vector<float>{1000, 1001, 1002, 1003, 1004, 1005}));
  // Diverging after 3 tokens from 1..6 and after 4 from 1,2,3,7,7: the latter's prefix.
  EXPECT_EQ(cache.lookup({1, 2, 3, 7, 8, 8}, "m").tokens, 4);
  // The exact sequence, and a prompt shorter than the entry it matches: all but the last prompt token.
  EXPECT_EQ(cache.lookup(seq(6), "m").tokens, 5);
  hit = cache.lookup({1, 2, 3}, "m");
  EXPECT_EQ(hit.tokens, 2);
  EXPECT_EQ(positions(hit.caches, 0), (std::vector<float>{0, 1}));
  // No common prefix, a one-token prompt, another identity: misses.
  EXPECT_EQ(cache.lookup({5, 1, 2}, "m").tokens, 0);
  EXPECT_EQ(cache.lookup({1}, "m").tokens, 0);
  EXPECT_TRUE(cache.lookup(seq(8), "other model").caches.empty());
  cache.count_miss(10);

  const auto s = cache.stats();
  EXPECT_EQ(s.lookups, 8);
  EXPECT_EQ(s.hits, 4);
  EXPECT_EQ(s.tokens_reused, 6 + 4 + 5 + 2);
  EXPECT_EQ(s.tokens_prefilled, (8 - 6) + (6 - 4) + (6 - 5) + (3 - 2) + 3 + 1 + 8 + 10);
  EXPECT_EQ(s.entries, 3);
  EXPECT_EQ(s.bytes, (6 + 4 + 5) * kTokenBytes);
}

TEST(PrefixCache, AHitIsACopyTheEntryOutlives) {
  PrefixCache cache(1 << 20);
  cache.insert(seq(5), kv_of(5), "m");
  auto hit = cache.lookup(seq(9), "m");
  ASSERT_EQ(hit.tokens, 5);
  // Decoding after the hit writes its own cache, never the stored entry.
  auto junk = mx::full({1, kHeads, 3, kDim}, -7.0f);
  hit.caches[0]->update(junk, junk);
  hit.caches[0]->trim(6);
  hit.caches[0]->update(junk, junk);
  auto again = cache.lookup(seq(9), "m");
  EXPECT_EQ(positions(again.caches, 0), (std::vector<float>{0, 1, 2, 3, 4}));
}

TEST(PrefixCache, EvictsTheLeastRecentlyUsedWithinTheBudget) {
  PrefixCache cache(25 * kTokenBytes);
  cache.insert(seq(10, 100), kv_of(10), "m");  // A
  cache.insert(seq(10, 200), kv_of(10), "m");  // B
  EXPECT_EQ(cache.stats().bytes, 20 * kTokenBytes);
  EXPECT_EQ(cache.lookup(seq(12, 100), "m").tokens, 10);  // A is now the most recently used
  cache.insert(seq(10, 300), kv_of(10), "m");             // C: B goes
  auto s = cache.stats();
  EXPECT_EQ(s.evictions, 1);
  EXPECT_EQ(s.entries, 2);
  EXPECT_EQ(s.bytes, 20 * kTokenBytes);
  EXPECT_EQ(cache.lookup(seq(12, 200), "m").tokens, 0);
  EXPECT_EQ(cache.lookup(seq(12, 100), "m").tokens, 10);
  EXPECT_EQ(cache.lookup(seq(12, 300), "m").tokens, 10);
  // A larger entry evicts as many as it needs (C was used last, so A goes first, then C).
  cache.insert(seq(24, 400), kv_of(24), "m");
  s = cache.stats();
  EXPECT_EQ(s.evictions, 3);
  EXPECT_EQ(s.entries, 1);
  EXPECT_EQ(s.bytes, 24 * kTokenBytes);
  EXPECT_LE(s.bytes, s.max_bytes);
  // One larger than the whole budget is not stored, and evicts nothing.
  EXPECT_FALSE(cache.insert(seq(26, 500), kv_of(26), "m"));
  EXPECT_EQ(cache.stats().entries, 1);
  EXPECT_EQ(cache.stats().insertions, 4);
}

TEST(PrefixCache, AnExtendingSequenceReplacesItsPrefixes) {
  PrefixCache cache(1 << 20);
  cache.insert(seq(4), kv_of(4), "m");
  cache.insert(seq(4), kv_of(4), "other");
  cache.insert(seq(9), kv_of(9), "m");  // the next chat turn: 1..4 is served by 1..9 as well
  auto s = cache.stats();
  EXPECT_EQ(s.entries, 2);
  EXPECT_EQ(s.bytes, (9 + 4) * kTokenBytes);
  EXPECT_EQ(s.evictions, 0);
  // Already covered by 1..9: nothing new is stored.
  EXPECT_FALSE(cache.insert(seq(6), kv_of(6), "m"));
  EXPECT_EQ(cache.stats().entries, 2);
  EXPECT_EQ(cache.lookup(seq(3), "other").tokens, 2);
}

TEST(PrefixCache, CountsTheWholeModelsHeadsWhenAsked) {
  // A tensor-parallel rank holding 2 of 3 heads counts 3, as the rank holding 1 does.
  PrefixCache cache(1 << 20);
  cache.insert(seq(5), kv_of(5), "m", 3);
  EXPECT_EQ(cache.stats().bytes, 5 * kTokenBytes / kHeads * 3);
}

TEST(PrefixCache, RefusesBadInput) {
  EXPECT_EQ(error_of([] { PrefixCache c(0); }), "[prefix-cache] the byte budget must be > 0");
  PrefixCache cache(1 << 20);
  EXPECT_EQ(error_of([&] { cache.insert({}, kv_of(1), "m"); }), "[prefix-cache] cannot store an empty sequence");
  EXPECT_EQ(error_of([&] { cache.insert(seq(3), kv_of(4), "m"); }),
            "[prefix-cache] keys/values must be [1, heads, 3, head_dim] for 3 tokens");
  EXPECT_EQ(cache.stats().entries, 0);
}

TEST(PrefixCache, CopyRowTakesABatchRowWithoutItsPadding) {
  auto m = create_model(parse_model_config(tiny_config_json()), tiny_weights(5));
  auto forward = [&](const std::vector<int>& ids) {
    auto c = m->make_caches();
    mx::eval(m->forward(mx::array(ids.data(), {1, static_cast<int>(ids.size())}, mx::int32), c));
    return c;
  };
  const std::vector<int> a = {3, 4, 5}, b = {7, 8, 9, 10, 11, 12, 13};
  KVCacheList batch;
  append_rows(batch, forward(a));
  append_rows(batch, forward(b));
  ASSERT_EQ(batch[0]->left_padding(), (std::vector<int>{4, 0}));
  auto alone = forward(a);
  auto row = copy_row(batch, 0, 3);
  ASSERT_TRUE(row);
  ASSERT_EQ(row->size(), alone.size());
  for (size_t l = 0; l < alone.size(); ++l) {
    auto kv = dynamic_cast<const StandardKVCache&>(*alone[l]).fetch();
    EXPECT_EQ((*row)[l].first.shape(), kv->first.shape());
    EXPECT_LT(max_abs_diff((*row)[l].first, kv->first), 1e-6f);
    EXPECT_LT(max_abs_diff((*row)[l].second, kv->second), 1e-6f);
  }
  auto longer = copy_row(batch, 1, 5);  // the first 5 of row 1's 7 positions
  ASSERT_TRUE(longer);
  EXPECT_EQ((*longer)[0].first.shape(2), 5);
  EXPECT_FALSE(copy_row(batch, 0, 4));  // row 0 holds 3 positions
  EXPECT_FALSE(copy_row(batch, 2, 1));
  // Rotating caches are not stored.
  KVCacheList rotating;
  for (size_t l = 0; l < alone.size(); ++l) rotating.push_back(std::make_unique<RotatingKVCache>(8, 2));
  mx::eval(m->forward(mx::array(a.data(), {1, 3}, mx::int32), rotating));
  EXPECT_FALSE(copy_row(rotating, 0, 3));
}

}  // namespace
}  // namespace mlxgp::testing
