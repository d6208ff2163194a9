// Batch rows that join and leave standard KV caches in place: kernels::move_positions (moves and zero
// fills within a buffer, in place only when nothing else holds it) and StandardKVCache's reserved rows,
// checked against each row's own keys and values after random joins, leaves and decode steps.
#include <gtest/gtest.h>

#include <random>

#include "kernels/position_moves.h"
#include "mlxgp/batch_cache.h"
#include "mlxgp/kv_cache.h"
#include "test_models_util.h"

namespace mx = mlx::core;

using namespace mlxgp;

namespace {

std::vector<float> values(const mx::array& a) {
  auto c = mx::contiguous(mx::astype(a, mx::float32));
  mx::eval(c);
  return std::vector<float>(c.data<float>(), c.data<float>() + c.size());
}

}  // namespace

TEST(PositionMoves, MovesAndZeroFillsInOrder) {
  const int R = 3, H = 2, T = 8, D = 4;
  auto buf = mx::reshape(mx::arange(R * H * T * D, mx::float32), {R, H, T, D});
  mx::eval(buf);
  auto before = values(buf);
  // Row 2's positions [1, 5) to row 0's [0, 4); row 1 shifted right by 2 within itself, its first two zeroed.
  std::vector<kernels::PositionMove> moves = {{2, 0, 1, 0, 4}, {1, 1, 0, 2, 6}, {-1, 1, 0, 0, 2}};
  auto out = values(kernels::move_positions(buf, moves));
  auto at = [&](const std::vector<float>& v, int r, int h, int t, int d) { return v[((r * H + h) * T + t) * D + d]; };
  for (int h = 0; h < H; ++h)
    for (int d = 0; d < D; ++d) {
      for (int t = 0; t < 4; ++t) EXPECT_EQ(at(out, 0, h, t, d), at(before, 2, h, t + 1, d));
      for (int t = 4; t < T; ++t) EXPECT_EQ(at(out, 0, h, t, d), at(before, 0, h, t, d));
      for (int t = 0; t < 2; ++t) EXPECT_EQ(at(out, 1, h, t, d), 0.0f);
      for (int t = 2; t < T; ++t) EXPECT_EQ(at(out, 1, h, t, d), at(before, 1, h, t - 2, d));
      for (int t = 0; t < T; ++t) EXPECT_EQ(at(out, 2, h, t, d), at(before, 2, h, t, d));
    }
  // `buf` is still held here, so the node copied it: the original is unchanged.
  EXPECT_EQ(values(buf), before);
}

TEST(PositionMoves, RefusesMovesOutOfRange) {
  auto buf = mx::zeros({2, 1, 4, 2});
  EXPECT_THROW(kernels::move_positions(buf, {{0, 2, 0, 0, 1}}), std::invalid_argument);
  EXPECT_THROW(kernels::move_positions(buf, {{0, 1, 2, 0, 3}}), std::invalid_argument);
  EXPECT_THROW(kernels::move_positions(buf, {{-2, 1, 0, 0, 1}}), std::invalid_argument);
}

namespace {

// One row's keys (values: the same plus 1000) for `n` positions, distinct per row and position.
mx::array row_keys(int id, int first, int n, int H = 2, int D = 8) {
  auto t = mx::reshape(mx::arange(first, first + n, mx::float32), {1, 1, n, 1});
  auto h = mx::reshape(mx::arange(H, mx::float32), {1, H, 1, 1});
  auto d = mx::reshape(mx::arange(D, mx::float32), {1, 1, 1, D});
  return mx::add(mx::add(mx::multiply(t, mx::array(100.0f)), mx::add(mx::multiply(h, mx::array(10.0f)), d)),
                 mx::array(100000.0f * id));
}

struct Row {
  int id, length;
};

// Every live row holds its own positions after its padding, and its padding holds zeros.
void expect_rows(const StandardKVCache& c, const std::vector<Row>& rows, const std::string& when) {
  ASSERT_EQ(c.rows(), static_cast<int>(rows.size())) << when;
  auto kv = c.fetch();
  ASSERT_TRUE(kv) << when;
  const auto& pad = c.left_padding();
  for (size_t r = 0; r < rows.size(); ++r) {
    const int p = pad.empty() ? 0 : pad[r];
    ASSERT_EQ(c.offset() - p, rows[r].length) << when << " row " << r;
    auto k = mx::slice(kv->first, {static_cast<int>(r), 0, 0, 0},
                       {static_cast<int>(r) + 1, kv->first.shape(1), c.offset(), kv->first.shape(3)});
    auto v = mx::slice(kv->second, {static_cast<int>(r), 0, 0, 0},
                       {static_cast<int>(r) + 1, kv->second.shape(1), c.offset(), kv->second.shape(3)});
    auto want = row_keys(rows[r].id, 0, rows[r].length);
    if (p > 0) want = mx::concatenate({mx::zeros({1, 2, p, 8}), want}, 2);
    EXPECT_EQ(values(k), values(want)) << when << " row " << r;
    EXPECT_EQ(
        values(v),
        values(mx::add(want, mx::where(mx::not_equal(want, mx::array(0.0f)), mx::array(1000.0f), mx::array(0.0f)))))
        << when << " row " << r;
  }
}

std::unique_ptr<StandardKVCache> cache_of(int id, int n) {
  auto c = std::make_unique<StandardKVCache>(16);
  auto k = row_keys(id, 0, n);
  c->update(k, mx::add(k, mx::array(1000.0f)));
  return c;
}

}  // namespace

TEST(BatchRows, JoinsLeavesAndStepsKeepEveryRowsPositions) {
  std::mt19937 rng(5);
  for (int reserve : {0, 6}) {
    KVCacheList batch;
    std::vector<Row> rows;
    int next_id = 1;
    for (int round = 0; round < 40; ++round) {
      const std::string when = "reserve " + std::to_string(reserve) + " round " + std::to_string(round);
      const int action = rows.empty() ? 0 : static_cast<int>(rng() % 3);
      if (action == 0 && rows.size() < 6) {  // a row joins, sometimes longer than every stored one
        const int n = 1 + static_cast<int>(rng() % 40);
        KVCacheList one;
        one.push_back(cache_of(next_id, n));
        append_rows(batch, std::move(one), reserve);
        rows.push_back({next_id++, n});
      } else if (action == 1 && rows.size() > 1) {  // some rows leave
        std::vector<int> keep;
        std::vector<Row> kept;
        for (int r = 0; r < static_cast<int>(rows.size()); ++r)
          if (rng() % 3 != 0) {
            keep.push_back(r);
            kept.push_back(rows[r]);
          }
        if (keep.empty()) continue;
        keep_rows(batch, keep);
        rows = kept;
      } else {  // a decode step: every row gets its next position
        std::vector<mx::array> ks;
        for (auto& r : rows) ks.push_back(row_keys(r.id, r.length, 1));
        auto k = mx::concatenate(ks, 0);
        auto* c = static_cast<StandardKVCache*>(batch[0].get());
        c->update(k, mx::add(k, mx::array(1000.0f)));
        for (auto& r : rows) ++r.length;
      }
      expect_rows(static_cast<StandardKVCache&>(*batch[0]), rows, when);
      if (reserve > 0 && !rows.empty()) {
        auto w = static_cast<StandardKVCache&>(*batch[0]).writable(1);
        EXPECT_EQ(w->keys.shape(0), reserve) << when;  // joins and leaves never gave the reserved rows up
      }
    }
  }
}

TEST(BatchRows, SharedPaddingIsDroppedOnceItIsAQuarter) {
  KVCacheList batch;
  for (auto [id, n] : {std::pair{1, 40}, {2, 10}, {3, 12}}) {
    KVCacheList one;
    one.push_back(cache_of(id, n));
    append_rows(batch, std::move(one), 4);
  }
  auto& c = static_cast<StandardKVCache&>(*batch[0]);
  keep_rows(batch, {1, 2});  // 28 of 40 positions are padding in both: dropped
  EXPECT_EQ(c.offset(), 12);
  EXPECT_EQ(c.left_padding(), (std::vector<int>{2, 0}));
  expect_rows(c, {{2, 10}, {3, 12}}, "after the long row left");
  KVCacheList one;
  one.push_back(cache_of(4, 11));
  append_rows(batch, std::move(one), 4);
  keep_rows(batch, {1, 2});  // 1 shared position of 12: kept
  EXPECT_EQ(c.offset(), 12);
  EXPECT_EQ(c.left_padding(), (std::vector<int>{0, 1}));
  expect_rows(c, {{3, 12}, {4, 11}}, "after a short row left");
}
