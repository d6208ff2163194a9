// KVCache::select: gathering batch rows (tiling a one-row prompt cache for num_return_sequences, and
// reordering for beam search), and batched decoding on tiled caches == each row decoded alone.
#include <gtest/gtest.h>

#include "test_models_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using namespace mlxgp::testing;

namespace {

// [B, 2, t, 4] where row b, position p holds 1000 * b + start + p.
mx::array rows_kv(int batch, int t, float start) {
  auto pos = mx::add(mx::arange(start, start + t, 1.0f), mx::zeros({batch, 2, 4, t}));
  auto row = mx::reshape(mx::multiply(mx::arange(0.0f, static_cast<float>(batch), 1.0f), mx::array(1000.0f)),
                         {batch, 1, 1, 1});
  return mx::add(mx::transpose(pos, {0, 1, 3, 2}), row);
}

mx::array row_of(const mx::array& a, int b) {
  return mx::slice(a, {b, 0, 0, 0}, {b + 1, a.shape(1), a.shape(2), a.shape(3)});
}

mx::array idx(std::vector<int> v) { return mx::array(v.data(), {static_cast<int>(v.size())}, mx::int32); }

}  // namespace

TEST(KVCacheSelect, TilesOneRowAndKeepsGrowing) {
  StandardKVCache c(4);
  c.update(rows_kv(1, 3, 0), rows_kv(1, 3, 100));
  c.select(idx({0, 0, 0}));
  EXPECT_EQ(c.offset(), 3);
  // Each row now continues on its own (rows_kv makes the new positions differ per row).
  auto k_new = rows_kv(3, 2, 3);
  auto [k, v] = c.update(k_new, k_new);
  EXPECT_EQ(k.shape(), (mx::Shape{3, 2, 5, 4}));
  for (int b = 0; b < 3; ++b) {
    auto prefix = mx::slice(row_of(k, b), {0, 0, 0, 0}, {1, 2, 3, 4});
    EXPECT_EQ(max_abs_diff(prefix, rows_kv(1, 3, 0)), 0.0f) << b;
    auto tail = mx::slice(row_of(k, b), {0, 0, 3, 0}, {1, 2, 5, 4});
    EXPECT_EQ(max_abs_diff(tail, row_of(k_new, b)), 0.0f) << b;
  }
  EXPECT_EQ(c.trim(1), 1);  // still trimmable after a select
  EXPECT_EQ(c.offset(), 4);
}

TEST(KVCacheSelect, ReordersAndDropsRows) {
  StandardKVCache c(8);
  c.update(rows_kv(3, 5, 0), rows_kv(3, 5, 50));
  c.select(idx({2, 0}));  // beam search style: row 2 then row 0; row 1 dropped
  auto [k, v] = c.update(mx::zeros({2, 2, 1, 4}), mx::zeros({2, 2, 1, 4}));
  EXPECT_EQ(k.shape(), (mx::Shape{2, 2, 6, 4}));
  auto all_k = rows_kv(3, 5, 0), all_v = rows_kv(3, 5, 50);
  EXPECT_EQ(max_abs_diff(mx::slice(row_of(k, 0), {0, 0, 0, 0}, {1, 2, 5, 4}), row_of(all_k, 2)), 0.0f);
  EXPECT_EQ(max_abs_diff(mx::slice(row_of(v, 1), {0, 0, 0, 0}, {1, 2, 5, 4}), row_of(all_v, 0)), 0.0f);
  // The clone taken before a select keeps the old rows.
  auto before = c.clone();
  c.select(idx({1}));
  auto [k1, v1] = before->update(mx::zeros({2, 2, 1, 4}), mx::zeros({2, 2, 1, 4}));
  EXPECT_EQ(k1.shape(0), 2);
}

TEST(KVCacheSelect, EmptyCacheAndBadIndices) {
  StandardKVCache c;
  c.select(idx({0, 0}));  // nothing stored: the first update sets the batch
  EXPECT_EQ(c.update(rows_kv(2, 1, 0), rows_kv(2, 1, 0)).first.shape(0), 2);
  EXPECT_EQ(error_of([&] { c.select(mx::zeros({2, 2}, mx::int32)); }),
            "[cache] batch indices must be a non-empty 1-D array");
  EXPECT_EQ(error_of([&] { c.select(mx::zeros({0}, mx::int32)); }),
            "[cache] batch indices must be a non-empty 1-D array");
  EXPECT_EQ(error_of([&] { c.select(mx::zeros({2}, mx::float32)); }), "[cache] batch indices must be integers");
}

TEST(KVCacheSelect, BatchedDecodeOnTiledCachesMatchesEachRowAlone) {
  auto model = create_model(parse_model_config(tiny_config_json()), tiny_weights(3));
  std::vector<int> prompt = {3, 17, 42, 8, 5};
  std::vector<int> next = {9, 30, 61};
  auto caches = model->make_caches();
  model->forward(mx::array(prompt.data(), {1, 5}, mx::int32), caches);
  for (auto& c : caches) c->select(idx({0, 0, 0}));
  auto batched = model->forward(mx::array(next.data(), {3, 1}, mx::int32), caches);
  auto again = model->forward(mx::array(next.data(), {3, 1}, mx::int32), caches);  // a second step
  for (int b = 0; b < 3; ++b) {
    auto solo = model->make_caches();
    model->forward(mx::array(prompt.data(), {1, 5}, mx::int32), solo);
    auto one = model->forward(mx::array(&next[b], {1, 1}, mx::int32), solo);
    auto two = model->forward(mx::array(&next[b], {1, 1}, mx::int32), solo);
    auto pick = [&](const mx::array& a) { return mx::slice(a, {b, 0, 0}, {b + 1, 1, a.shape(2)}); };
    EXPECT_LT(max_abs_diff(pick(batched), one), 1e-5f) << b;
    EXPECT_LT(max_abs_diff(pick(again), two), 1e-5f) << b;
  }
}
