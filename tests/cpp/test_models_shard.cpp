// Tensor-parallel sharding (src/models/shard.cpp) and the dead-peer watch (src/distributed/peer_watch.cpp).
// The numerics of a sharded model against one process are in tests/parity/test_distributed.py.
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <mlx/mlx.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mlxgp/error.h"
#include "mlxgp/peer_watch.h"
#include "models/shard.h"

namespace mx = mlx::core;
using namespace mlxgp;

namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.model_type = "llama";
  c.hidden_size = 64;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 3;
  c.head_dim = 8;
  c.intermediate_size = 128;
  c.num_hidden_layers = 1;
  return c;
}

mx::array ramp(int rows, int cols) {
  return mx::reshape(mx::astype(mx::arange(rows * cols), mx::float32), {rows, cols});
}

}  // namespace

TEST(Shard, SplitsUnevenlyWithEarlierRanksLarger) {
  auto a = shard::split(3, 0, 2), b = shard::split(3, 1, 2);
  EXPECT_EQ(a.begin, 0);
  EXPECT_EQ(a.end, 2);
  EXPECT_EQ(b.begin, 2);
  EXPECT_EQ(b.end, 3);
  auto g0 = shard::split(1536, 0, 2, 32), g1 = shard::split(1536, 1, 2, 32);
  EXPECT_EQ(g0.end, 768);
  EXPECT_EQ(g1.begin, 768);
  EXPECT_EQ(g1.end, 1536);
  auto q = shard::split(96, 2, 3, 32);  // three blocks of 32 over three ranks
  EXPECT_EQ(q.begin, 64);
  EXPECT_EQ(q.end, 96);
}

TEST(Shard, RanksTogetherHoldEveryRowAndColumnOnce) {
  const auto c = tiny_config();
  const int Q = 6 * 8, KV = 3 * 8;
  WeightMap w = {{"model.layers.0.self_attn.q_proj.weight", ramp(Q, 64)},
                 {"model.layers.0.self_attn.k_proj.weight", ramp(KV, 64)},
                 {"model.layers.0.self_attn.o_proj.weight", ramp(64, Q)},
                 {"model.layers.0.self_attn.o_proj.bias", mx::reshape(ramp(1, 64), {64})},
                 {"model.layers.0.mlp.gate_proj.weight", ramp(128, 64)},
                 {"model.layers.0.mlp.down_proj.weight", ramp(64, 128)},
                 {"model.layers.0.input_layernorm.weight", mx::ones({64})}};
  std::vector<WeightMap> parts;
  for (int r = 0; r < 2; ++r) {
    auto plan = shard::make_plan(c, w, r, 2, false);
    EXPECT_EQ(plan.q_heads.size(), r == 0 ? 4 : 2);  // KV groups 2 + 1, two query heads each
    parts.push_back(shard::slice_weights(w, c, plan, false));
    auto local = shard::local_config(c, plan, false);
    EXPECT_EQ(local.num_attention_heads, plan.q_heads.size());
    EXPECT_EQ(local.num_key_value_heads, plan.kv_heads.size());
    EXPECT_EQ(local.intermediate_size, 64);
  }
  auto joined = [&](const std::string& n, int axis) { return mx::concatenate({parts[0].at(n), parts[1].at(n)}, axis); };
  for (auto& [name, axis] : std::vector<std::pair<std::string, int>>{{"model.layers.0.self_attn.q_proj.weight", 0},
                                                                     {"model.layers.0.self_attn.k_proj.weight", 0},
                                                                     {"model.layers.0.self_attn.o_proj.weight", 1},
                                                                     {"model.layers.0.mlp.gate_proj.weight", 0},
                                                                     {"model.layers.0.mlp.down_proj.weight", 1}})
    EXPECT_TRUE(mx::array_equal(joined(name, axis), w.at(name)).item<bool>()) << name;
  // The output bias is added once after the sum, and norms stay whole: every rank keeps them.
  for (auto* n : {"model.layers.0.self_attn.o_proj.bias", "model.layers.0.input_layernorm.weight"})
    for (auto& p : parts) EXPECT_TRUE(mx::array_equal(p.at(n), w.at(n)).item<bool>()) << n;
}

TEST(Shard, QuantizedColumnsFollowTheirGroups) {
  auto c = tiny_config();
  auto q = mx::quantize(ramp(64, 128), 32, 4);  // {packed weight, scales, biases}
  WeightMap w = {{"model.layers.0.mlp.down_proj.weight", q.at(0)},
                 {"model.layers.0.mlp.down_proj.scales", q.at(1)},
                 {"model.layers.0.mlp.down_proj.biases", q.at(2)}};
  auto p0 = shard::slice_weights(w, c, shard::make_plan(c, w, 0, 2, false), false);
  auto p1 = shard::slice_weights(w, c, shard::make_plan(c, w, 1, 2, false), false);
  auto deq = [](const WeightMap& m) {
    return mx::dequantize(m.at("model.layers.0.mlp.down_proj.weight"), m.at("model.layers.0.mlp.down_proj.scales"),
                          m.at("model.layers.0.mlp.down_proj.biases"), 32, 4);
  };
  auto whole = deq(w);
  EXPECT_TRUE(mx::array_equal(mx::concatenate({deq(p0), deq(p1)}, 1), whole).item<bool>());
  // Five ranks cannot split 128 features in blocks of 32 without an empty share.
  EXPECT_THROW(shard::make_plan(c, w, 0, 5, false), Error);
}

TEST(Shard, RefusesFewerKvHeadsThanRanks) {
  auto c = tiny_config();
  try {
    shard::make_plan(c, {}, 0, 4, false);
    FAIL() << "expected a refusal";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "[distributed] tensor parallelism over 4 ranks needs at least 4 key/value heads; the model has 3");
  }
}

TEST(Shard, MultiQueryAttentionKeepsTheKeyValueHeadOnEveryRank) {
  // gpt_bigcode's one key/value head: the query rows of the fused [q; k; v] split, k and v whole on each rank.
  auto c = tiny_config();
  c.num_attention_heads = 4;
  c.num_key_value_heads = 1;
  c.head_dim = 16;
  const int Q = 4 * 16, KV = 16;
  WeightMap w = {{"model.layers.0.self_attn.qkv_proj.weight", ramp(Q + 2 * KV, 64)}};
  for (int rank = 0; rank < 2; ++rank) {
    auto plan = shard::make_plan(c, w, rank, 2, false);
    EXPECT_EQ(plan.q_heads.begin, 2 * rank);
    EXPECT_EQ(plan.q_heads.size(), 2);
    EXPECT_EQ(plan.kv_heads.begin, 0);
    EXPECT_EQ(plan.kv_heads.size(), 1);
    auto part = shard::slice_weights(w, c, plan, false).at("model.layers.0.self_attn.qkv_proj.weight");
    auto& whole = w.at("model.layers.0.self_attn.qkv_proj.weight");
    auto want = mx::concatenate(
        {mx::slice(whole, {rank * Q / 2, 0}, {(rank + 1) * Q / 2, 64}), mx::slice(whole, {Q, 0}, {Q + 2 * KV, 64})}, 0);
    EXPECT_TRUE(mx::array_equal(part, want).item<bool>()) << rank;
  }
  // More ranks than query heads is still refused.
  EXPECT_THROW(shard::make_plan(c, w, 0, 8, false), Error);
}

TEST(PeerWatch, ReportsAHungUpPeerAfterTheGraceTime) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  std::atomic<bool> lost{false};
  {
    PeerWatch watch(std::vector<int>{sv[0]}, [&](const std::string&) { lost = true; }, 0.3);
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    EXPECT_FALSE(lost);  // the peer is alive
    close(sv[1]);        // the peer dies
    for (int i = 0; i < 40 && !lost; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_TRUE(lost);
  }
  close(sv[0]);
}

TEST(PeerWatch, EndedBeforeTheGraceTimeSaysNothing) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  std::atomic<bool> lost{false};
  {
    PeerWatch watch(std::vector<int>{sv[0]}, [&](const std::string&) { lost = true; }, 5.0);
    close(sv[1]);  // the peer finished its last step and exited; this rank is finishing too
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
  }
  EXPECT_FALSE(lost);
  close(sv[0]);
}

TEST(PeerWatch, ReportsAPeerThatStopsBeating) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  std::atomic<bool> stop{false}, lost{false};
  std::string why;
  std::mutex m;
  // The peer beats while alive, like a slow rank whose watch thread still runs; then it freezes.
  std::thread peer([&] {
    while (!stop) {
      (void)write(sv[1], "h", 1);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  {
    PeerWatch watch(
        std::vector<int>{},
        [&](const std::string& w) {
          std::lock_guard<std::mutex> lock(m);
          why = w;
          lost = true;
        },
        5.0, std::vector<int>{sv[0]}, 0.8);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    EXPECT_FALSE(lost);  // alive: it beats
    stop = true;         // frozen: its socket stays open, nothing arrives
    peer.join();
    for (int i = 0; i < 60 && !lost; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_TRUE(lost);
  }
  std::lock_guard<std::mutex> lock(m);
  EXPECT_NE(why.find("no sign of life"), std::string::npos) << why;
  close(sv[0]);
  close(sv[1]);
}
