// The fused decode step (DecoderModel::fused_decode, kernels::decode_layers): a decode step's blocks as one
// node give the blocks op by op bit for bit, for every llama.cpp block type mix, with and without int8
// activations, one row or a left-padded batch, standard or quantized caches, and its in-place cache writes
// never reach a cache that shares the buffers (clones, trims, fetched views).
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "mlxgp/batch_cache.h"
#include "mlxgp/kv_cache.h"
#include "mlxgp/model.h"
#include "mlxgp/model_config.h"
#include "mlxgp/quantized_kv_cache.h"
#include "mlxgp/steering.h"

#include "kernels/ggml_blocks.h"
#include "kernels/ggml_q8.h"
#include "kernels/kernels.h"
#include "ggml_test_blocks.h"
#include "test_models_util.h"

namespace mx = mlx::core;
namespace k = mlxgp::kernels;
using mlxgp::KVCacheList;
using mlxgp::Model;
using mlxgp::testing::random_blocks;

namespace {

class FusedDecode : public mlxgp::testing::CpuDefaultDevice {
 protected:
  void TearDown() override { unsetenv("MLXGP_DISABLE_FUSED_DECODE"); }
};

// The projections' block types of one model: q, k, v, o, gate, up, down.
struct Types {
  uint32_t q, k, v, o, gate, up, down;
  bool int8;
};

// A tiny llama (hidden 256 so the K-quants fit, 4 heads of 64, 2 KV heads, 2 layers) with its projections as
// random llama.cpp blocks of `t`.
std::unique_ptr<Model> block_model(const Types& t, uint32_t seed = 1) {
  auto config = mlxgp::parse_model_config(R"({"model_type": "llama", "vocab_size": 64, "hidden_size": 256,
    "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false})");
  mlxgp::WeightMap w;
  int n = 0;
  auto rnd = [&](const mx::Shape& s) { return mx::random::normal(s, 0.0f, 0.2f, mx::random::key(seed * 1000 + ++n)); };
  w.emplace("model.embed_tokens.weight", rnd({64, 256}));
  w.emplace("lm_head.weight", rnd({64, 256}));
  w.emplace("model.norm.weight", mx::add(mx::ones({256}), rnd({256})));
  for (int i = 0; i < 2; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    w.emplace(p + "input_layernorm.weight", mx::add(mx::ones({256}), rnd({256})));
    w.emplace(p + "post_attention_layernorm.weight", mx::add(mx::ones({256}), rnd({256})));
    auto blocks = [&](const std::string& name, uint32_t type, int rows, int in) {
      w.emplace(p + name + ".weight", random_blocks(type, rows, in, seed * 100 + ++n, 0x1400));
      w.emplace(p + name + ".ggml_type", mx::array(type, mx::uint32));
      if (t.int8) w.emplace(p + name + ".int8_activations", mx::array(true));
    };
    blocks("self_attn.q_proj", t.q, 256, 256);
    blocks("self_attn.k_proj", t.k, 128, 256);
    blocks("self_attn.v_proj", t.v, 128, 256);
    blocks("self_attn.o_proj", t.o, 256, 256);
    blocks("mlp.gate_proj", t.gate, 512, 256);
    blocks("mlp.up_proj", t.up, 512, 256);
    blocks("mlp.down_proj", t.down, 256, 512);
  }
  return mlxgp::create_model(config, w);
}

bool supported(const Types& t) {
  for (uint32_t type : {t.q, t.k, t.v, t.o, t.gate, t.up, t.down})
    if (t.int8 ? !k::ggml_q8_supported(type) : !k::ggml_type_supported(type)) return false;
  return k::available();
}

bool same_bits(const mx::array& a, const mx::array& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && mx::array_equal(a, b, /*equal_nan=*/true).item<bool>();
}

// Whether the (unevaluated) graph of `a` holds a node of this primitive.
bool graph_has(const mx::array& a, const std::string& name) {
  std::set<std::uintptr_t> seen;
  std::function<bool(const mx::array&)> walk = [&](const mx::array& x) {
    if (!seen.insert(x.id()).second || !x.has_primitive()) return false;
    if (name == x.primitive().name()) return true;
    for (const auto& in : x.inputs())
      if (walk(in)) return true;
    return false;
  };
  return walk(a);
}

mx::array ids(std::vector<int> v) { return mx::array(v.data(), {1, static_cast<int>(v.size())}, mx::int32); }

// One decode step (a token per row) with the fused node on or off; checks which path the graph took.
mx::array step(Model& m, KVCacheList& caches, const std::vector<int>& tokens, bool fused) {
  if (fused) unsetenv("MLXGP_DISABLE_FUSED_DECODE");
  else setenv("MLXGP_DISABLE_FUSED_DECODE", "1", 1);
  auto logits = m.forward(mx::array(tokens.data(), {static_cast<int>(tokens.size()), 1}, mx::int32), caches);
  EXPECT_EQ(graph_has(logits, "MlxgpCpuDecodeLayers"), fused);
  mx::eval(logits);
  return logits;
}

// A model's caches: standard (bits 0) or quantized with `bits` per element in groups of `group`.
KVCacheList make_caches(const Model& m, int bits = 0, int group = 64) {
  if (!bits) return m.make_caches();
  KVCacheList caches;
  for (size_t i = 0; i < m.make_caches().size(); ++i)
    caches.push_back(std::make_unique<mlxgp::QuantizedKVCache>(group, bits));
  return caches;
}

// Prefill (op by op: several positions), then the same decode steps both ways; every step's logits agree bit
// for bit. `rows` > 1: a batch of rows of different lengths (left padding).
void expect_steps_equal(Model& m, int rows, int steps, int bits = 0, int group = 64) {
  auto prefill = [&] {
    KVCacheList caches;
    for (int r = 0; r < rows; ++r) {
      auto row = make_caches(m, bits, group);
      std::vector<int> prompt;
      for (int i = 0; i < 5 + 3 * r; ++i) prompt.push_back((7 * i + 3 * r + 1) % 64);
      mx::eval(m.forward(ids(prompt), row));
      mlxgp::append_rows(caches, std::move(row));
    }
    return caches;
  };
  auto fused = prefill(), plain = prefill();
  if (rows > 1) {
    ASSERT_FALSE(fused[0]->left_padding().empty());
  }
  for (int s = 0; s < steps; ++s) {
    std::vector<int> tokens;
    for (int r = 0; r < rows; ++r) tokens.push_back((11 * s + 5 * r + 2) % 64);
    auto a = step(m, fused, tokens, true), b = step(m, plain, tokens, false);
    ASSERT_TRUE(same_bits(a, b)) << "step " << s << ": max |diff| " << mlxgp::testing::max_abs_diff(a, b);
    ASSERT_TRUE(mx::all(mx::isfinite(a)).item<bool>());
  }
}

const std::vector<std::pair<std::string, Types>>& type_mixes() {
  using namespace mlxgp::kernels;
  static const std::vector<std::pair<std::string, Types>> mixes = {
      {"Q4_0 int8", {kGgmlQ4_0, kGgmlQ4_0, kGgmlQ4_0, kGgmlQ4_0, kGgmlQ4_0, kGgmlQ4_0, kGgmlQ4_0, true}},
      // llama.cpp's Q4_K_M mix: q/k, v and o, the MLP in three other types.
      {"Q4_K_M-like int8", {kGgmlQ5_0, kGgmlQ5_0, kGgmlQ8_0, kGgmlQ4_K, kGgmlQ4_K, kGgmlQ4_1, kGgmlQ6_K, true}},
      {"Q5_1 / Q8_0 int8", {kGgmlQ5_1, kGgmlQ5_1, kGgmlQ8_0, kGgmlQ8_0, kGgmlQ5_0, kGgmlQ5_0, kGgmlQ4_0, true}},
      {"Q4_1 float", {kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, false}},
      {"K-quants float", {kGgmlQ2_K, kGgmlQ3_K, kGgmlQ6_K, kGgmlQ5_K, kGgmlQ4_K, kGgmlQ4_K, kGgmlQ6_K, false}},
  };
  return mixes;
}

}  // namespace

TEST_F(FusedDecode, StepsEqualTheBlocksOpByOpBitForBit) {
  int ran = 0;
  for (const auto& [name, types] : type_mixes()) {
    if (!supported(types)) continue;  // int8 activations need AVX-512 VNNI
    SCOPED_TRACE(name);
    auto m = block_model(types);
    expect_steps_equal(*m, 1, 6);
    expect_steps_equal(*m, 3, 4);
    ++ran;
  }
  if (!k::available()) GTEST_SKIP() << "the CPU kernels do not run on this machine";
  EXPECT_GE(ran, 2);  // the float-activation mixes run on any AVX2 machine
}

// A quantized cache's new rows are quantized inside the node as mx::quantize does in the op-by-op step, and
// read by the same attention kernel: the same bits, for each width the node covers.
TEST_F(FusedDecode, QuantizedCacheStepsEqualTheBlocksOpByOp) {
  if (!k::available()) GTEST_SKIP() << "the CPU kernels do not run on this machine";
  using namespace mlxgp::kernels;
  auto m = block_model({kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, false});
  for (auto [bits, group] : {std::pair{8, 64}, std::pair{4, 32}, std::pair{2, 64}}) {
    SCOPED_TRACE("bits=" + std::to_string(bits) + " group=" + std::to_string(group));
    expect_steps_equal(*m, 1, 5, bits, group);
    expect_steps_equal(*m, 3, 4, bits, group);
  }
  // 3-bit words straddle bytes: those steps stay op by op.
  auto caches = make_caches(*m, 3);
  mx::eval(m->forward(ids({1, 2, 3}), caches));
  EXPECT_FALSE(graph_has(m->forward(ids({4}), caches), "MlxgpCpuDecodeLayers"));
}

// A step that outgrows the buffers' capacity (256 positions) grows them first.
TEST_F(FusedDecode, GrowsTheCacheAtItsCapacity) {
  if (!k::available()) GTEST_SKIP() << "the CPU kernels do not run on this machine";
  using namespace mlxgp::kernels;
  auto m = block_model({kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, false});
  std::vector<int> prompt(254);
  for (int i = 0; i < 254; ++i) prompt[i] = (13 * i + 5) % 64;
  auto fused = m->make_caches(), plain = m->make_caches();
  mx::eval(m->forward(ids(prompt), fused));
  mx::eval(m->forward(ids(prompt), plain));
  for (int s = 0; s < 5; ++s) {
    auto a = step(*m, fused, {s + 1}, true), b = step(*m, plain, {s + 1}, false);
    ASSERT_TRUE(same_bits(a, b)) << "step " << s;
  }
  EXPECT_EQ(fused[0]->offset(), 259);
}

// The node writes the caches' buffers in place; a clone shares them until one of the two writes, a trim
// rewinds the position written next, and a fetched view must keep what it showed. Each path below is
// compared with the same calls op by op.
TEST_F(FusedDecode, InPlaceWritesNeverReachSharedBuffers) {
  if (!k::available()) GTEST_SKIP() << "the CPU kernels do not run on this machine";
  using namespace mlxgp::kernels;
  auto m = block_model({kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, false});
  for (int bits : {0, 4}) {
    SCOPED_TRACE("kv bits " + std::to_string(bits));
    auto run = [&](bool fused) {
      std::vector<mx::array> out;
      auto caches = make_caches(*m, bits);
      mx::eval(m->forward(ids({1, 2, 3, 4, 5, 6}), caches));
      KVCacheList twin;
      for (auto& c : caches) twin.push_back(c->clone());
      for (auto& c : caches) c->trim(2);
      out.push_back(step(*m, caches, {7}, fused));  // position 4, which the clone still holds
      out.push_back(step(*m, twin, {9}, fused));
      out.push_back(step(*m, caches, {8}, fused));
      out.push_back(step(*m, twin, {10}, fused));
      auto* standard = dynamic_cast<mlxgp::StandardKVCache*>(caches[0].get());
      auto* quantized = dynamic_cast<mlxgp::QuantizedKVCache*>(caches[0].get());
      auto view = standard ? standard->fetch()->first : quantized->fetch()->first.data;  // keys of positions 0..5
      for (auto& c : caches) c->trim(2);                                                 // a speculative rollback
      out.push_back(step(*m, caches, {11}, fused));
      out.push_back(step(*m, caches, {12}, fused));
      out.push_back(mx::copy(view));  // still the keys of tokens 7 and 8 at positions 4 and 5
      mx::eval(out.back());
      return out;
    };
    auto fused = run(true), plain = run(false);
    ASSERT_EQ(fused.size(), plain.size());
    for (size_t i = 0; i < fused.size(); ++i) EXPECT_TRUE(same_bits(fused[i], plain[i])) << "output " << i;
  }
}

// A hook on a block's output (steering) sees every block one by one, so those steps run op by op.
TEST_F(FusedDecode, ResidualHooksKeepTheBlocksOpByOp) {
  if (!k::available()) GTEST_SKIP() << "the CPU kernels do not run on this machine";
  using namespace mlxgp::kernels;
  auto m = block_model({kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, false});
  auto caches = m->make_caches();
  mx::eval(m->forward(ids({1, 2, 3}), caches));
  auto plain = m->forward(ids({4}), caches);
  mx::eval(plain);
  for (auto& c : caches) c->trim(1);
  mlxgp::add_hook(*m, std::make_shared<mlxgp::ResidualInjectionHook>(
                          std::vector<int>{0}, mx::multiply(mx::ones({256}), mx::array(0.5f)), 1.0));
  auto steered = m->forward(ids({4}), caches);
  EXPECT_FALSE(graph_has(steered, "MlxgpCpuDecodeLayers"));
  mx::eval(steered);
  EXPECT_GT(mlxgp::testing::max_abs_diff(steered, plain), 1e-3);  // the hook ran
}

// What the fused node does not cover runs op by op: float weights, a prefill.
TEST_F(FusedDecode, LeavesOtherModelsAndStepsOpByOp) {
  if (!k::available()) GTEST_SKIP() << "the CPU kernels do not run on this machine";
  mlxgp::testing::TinyModel tiny;  // float weights
  auto caches = tiny.model->make_caches();
  mx::eval(tiny.model->forward(ids({1, 2, 3}), caches));
  EXPECT_FALSE(graph_has(tiny.model->forward(ids({4}), caches), "MlxgpCpuDecodeLayers"));
  using namespace mlxgp::kernels;
  auto m = block_model({kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, false});
  auto c2 = m->make_caches();
  EXPECT_FALSE(graph_has(m->forward(ids({1, 2, 3}), c2), "MlxgpCpuDecodeLayers"));
  EXPECT_TRUE(graph_has(m->forward(ids({4}), c2), "MlxgpCpuDecodeLayers"));
}

// A fused step whose output nobody evaluates (a stepped prefill's last one-token forward, once dropped by
// speculative decoding under kv_bits) still writes its positions: the caches depend on the node, so the
// next forward that reads them runs it first.
TEST_F(FusedDecode, AStepNobodyEvaluatesStillWritesTheCaches) {
  if (!k::available()) GTEST_SKIP() << "the CPU kernels do not run on this machine";
  using namespace mlxgp::kernels;
  auto m = block_model({kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, kGgmlQ4_1, false});
  for (int bits : {0, 8}) {
    SCOPED_TRACE("bits=" + std::to_string(bits));
    auto fused = make_caches(*m, bits), plain = make_caches(*m, bits);
    mx::eval(m->forward(ids({1, 2, 3, 4, 5}), fused));
    mx::eval(m->forward(ids({1, 2, 3, 4, 5}), plain));
    unsetenv("MLXGP_DISABLE_FUSED_DECODE");
    {
      auto dropped = m->forward(ids({6}), fused);
      ASSERT_TRUE(graph_has(dropped, "MlxgpCpuDecodeLayers"));
    }
    setenv("MLXGP_DISABLE_FUSED_DECODE", "1", 1);
    mx::eval(m->forward(ids({6}), plain));
    auto a = m->forward(ids({7, 8}), fused), b = m->forward(ids({7, 8}), plain);  // two positions: op by op
    ASSERT_TRUE(same_bits(a, b)) << "max |diff| " << mlxgp::testing::max_abs_diff(a, b);
  }
}
