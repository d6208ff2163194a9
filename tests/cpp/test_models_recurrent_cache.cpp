// RecurrentCache (a recurrent layer's state: lfm2's short convolutions) and how it moves with the KV caches of a
// hybrid model: rows selected, joined and left, padding kept in step with the attention layers'; and Lfm2Config as
// parse_model_config reads it.
#include <gtest/gtest.h>

#include "mlxgp/batch_cache.h"
#include "mlxgp/error.h"
#include "mlxgp/model_config.h"
#include "mlxgp/recurrent_cache.h"
#include "test_models_util.h"
#include "test_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using namespace mlxgp::testing;

namespace {

// A state [rows, 2, 3] whose row r holds r + base everywhere.
mx::array state_rows(int rows, float base) {
  return mx::add(mx::broadcast_to(mx::reshape(mx::arange(rows, mx::float32), {rows, 1, 1}), {rows, 2, 3}),
                 mx::array(base));
}

std::vector<float> first_of_each_row(const mx::array& s) {
  auto c = mx::contiguous(s);
  mx::eval(c);
  std::vector<float> out;
  const int per_row = static_cast<int>(c.size()) / c.shape(0);
  for (int r = 0; r < c.shape(0); ++r) out.push_back(c.data<float>()[r * per_row]);
  return out;
}

// Keys [rows, 1, n, 2] for a standard cache.
mx::array keys(int rows, int n) { return mx::ones({rows, 1, n, 2}); }

}  // namespace

TEST(RecurrentCache, HoldsStatesNotKeysAndCannotBeTrimmed) {
  RecurrentCache c;
  EXPECT_EQ(error_of([&] { c.update(keys(1, 1), keys(1, 1)); }),
            "[cache] a recurrent layer's cache holds no keys or values");
  EXPECT_FALSE(c.state(0).has_value());
  c.set_state(0, state_rows(2, 0));
  c.advance(5);
  EXPECT_EQ(c.offset(), 5);
  EXPECT_EQ(c.rows(), 2);
  EXPECT_FALSE(c.is_trimmable());
  EXPECT_EQ(c.trim(2), 0);
  EXPECT_EQ(c.offset(), 5);
  EXPECT_EQ(error_of([&] { c.state(1); }), "[cache] no state slot 1");
  EXPECT_EQ(error_of([&] { RecurrentCache bad(0); }), "[cache] a recurrent cache needs at least one state slot");
  // A clone keeps its own state when the original moves on.
  auto copy = c.clone();
  c.set_state(0, state_rows(2, 10));
  c.advance(1);
  EXPECT_EQ(copy->offset(), 5);
  EXPECT_EQ(first_of_each_row(*static_cast<RecurrentCache&>(*copy).state(0)), (std::vector<float>{0, 1}));
  KVCacheList list;
  list.push_back(std::make_unique<StandardKVCache>());
  EXPECT_FALSE(has_recurrent_state(list));
  list.push_back(std::move(copy));
  EXPECT_TRUE(has_recurrent_state(list));
}

TEST(RecurrentCache, SelectReordersRowsAndTheirPadding) {
  // Two caches of one hybrid model, rows joined with 3 and 5 positions: the shorter row is padded by 2 in both.
  KVCacheList a, b;
  for (auto* l : {&a, &b}) {
    auto r = std::make_unique<RecurrentCache>();
    auto s = std::make_unique<StandardKVCache>();
    const int n = l == &a ? 3 : 5;
    r->set_state(0, state_rows(1, l == &a ? 0 : 100));
    r->advance(n);
    s->update(keys(1, n), keys(1, n));
    l->push_back(std::move(r));
    l->push_back(std::move(s));
  }
  append_rows(a, std::move(b));
  for (auto& c : a) {
    EXPECT_EQ(c->offset(), 5);
    EXPECT_EQ(c->left_padding(), (std::vector<int>{2, 0}));
  }
  auto& rc = static_cast<RecurrentCache&>(*a[0]);
  EXPECT_EQ(first_of_each_row(*rc.state(0)), (std::vector<float>{0, 100}));
  // The padded row's next positions are tokens; its padding is masked while it is fed.
  auto m = rc.token_mask(1);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->shape(), (mx::Shape{2, 1}));
  rc.select(mx::array({1, 0, 1}));
  EXPECT_EQ(first_of_each_row(*rc.state(0)), (std::vector<float>{100, 0, 100}));
  EXPECT_EQ(rc.left_padding(), (std::vector<int>{0, 2, 0}));
  EXPECT_EQ(rc.rows(), 3);
}

TEST(RecurrentCache, RowsLeavingDropSharedPaddingInStepWithTheKVCaches) {
  KVCacheList caches;
  for (int n : {2, 6, 4}) {
    KVCacheList one;
    auto r = std::make_unique<RecurrentCache>();
    r->set_state(0, state_rows(1, static_cast<float>(n)));
    r->advance(n);
    one.push_back(std::move(r));
    auto s = std::make_unique<StandardKVCache>();
    s->update(keys(1, n), keys(1, n));
    one.push_back(std::move(s));
    append_rows(caches, std::move(one));
  }
  EXPECT_EQ(caches[0]->left_padding(), (std::vector<int>{4, 0, 2}));
  keep_rows(caches, {2, 0});  // the longest row leaves: both kept rows share 2 positions of padding
  for (auto& c : caches) {
    EXPECT_EQ(c->offset(), 4);
    EXPECT_EQ(c->left_padding(), (std::vector<int>{0, 2}));
  }
  EXPECT_EQ(first_of_each_row(*static_cast<RecurrentCache&>(*caches[0]).state(0)), (std::vector<float>{4, 2}));
  // A recurrent cache joins recurrent caches only.
  KVCacheList wrong;
  wrong.push_back(std::make_unique<StandardKVCache>());
  wrong.back()->update(keys(1, 2), keys(1, 2));
  wrong.push_back(std::make_unique<StandardKVCache>());
  wrong.back()->update(keys(1, 2), keys(1, 2));
  EXPECT_EQ(error_of([&] { append_rows(caches, std::move(wrong)); }),
            "[cache] rows of different lengths can only share KV caches of one kind (standard, quantized alike, or "
            "rotating alike) and recurrent layers' caches");
}

TEST(Lfm2Config, LayerTypesFullAttnIdxsAndTheMlpWidth) {
  // Lfm2MLP: int(2 * 64 / 3) = 42, times block_ffn_dim_multiplier 1.0, up to block_multiple_of (256).
  auto c = parse_model_config(tiny_config_json("lfm2", R"(, "layer_types": ["conv", "full_attention"])"));
  EXPECT_EQ(c.conv_layers, (std::vector<bool>{true, false}));
  EXPECT_EQ(c.intermediate_size, 256);
  EXPECT_EQ(c.conv_kernel, 3);
  EXPECT_FALSE(c.conv_bias);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);  // norm_eps's default; Lfm2Config has no rms_norm_eps
  // The released configs' spelling: full_attn_idxs, block_ff_dim over intermediate_size, tie_embedding, norm_eps.
  c = parse_model_config(tiny_config_json(
      "lfm2", R"(, "full_attn_idxs": [1], "block_ff_dim": 96, "block_multiple_of": 16, "tie_embedding": true,
      "norm_eps": 1e-6, "conv_L_cache": 4, "conv_bias": true)"));
  EXPECT_EQ(c.conv_layers, (std::vector<bool>{true, false}));
  EXPECT_EQ(c.intermediate_size, 64);  // int(2 * 96 / 3) = 64, a multiple of 16
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_EQ(c.conv_kernel, 4);
  EXPECT_TRUE(c.conv_bias);
  // Without block_auto_adjust_ff_dim the width is taken as it is; a null multiplier skips the rounding.
  c = parse_model_config(tiny_config_json("lfm2", R"(, "block_auto_adjust_ff_dim": false)"));
  EXPECT_EQ(c.intermediate_size, 64);
  c = parse_model_config(tiny_config_json("lfm2", R"(, "block_ffn_dim_multiplier": null)"));
  EXPECT_EQ(c.intermediate_size, 42);
  EXPECT_EQ(error_of([&] { parse_model_config(tiny_config_json("lfm2", R"(, "layer_types": ["conv", "mamba"])")); }),
            "[config] unsupported lfm2 layer type \"mamba\" (supported: conv, full_attention)");
  EXPECT_EQ(error_of([&] { parse_model_config(tiny_config_json("lfm2", R"(, "conv_L_cache": 0)")); }),
            "[config] conv_L_cache must be at least 1");
  EXPECT_EQ(error_of([&] { parse_model_config(tiny_config_json("lfm2", R"(, "block_ffn_dim_multiplier": -1)")); }),
            "[config] block_ffn_dim_multiplier must be a positive number");
}

TEST(Lfm2Config, Lfm2MoeExpertsAndTheirDefaults) {
  // Lfm2MoeConfig: the dense width as given, 32 experts of 1792 top-4 after 2 dense layers, expert_bias on.
  auto c = parse_model_config(tiny_config_json("lfm2_moe", R"(, "layer_types": ["conv", "full_attention"])"));
  EXPECT_EQ(c.intermediate_size, 64);
  EXPECT_EQ(c.conv_layers, (std::vector<bool>{true, false}));
  EXPECT_EQ(c.num_experts, 32);
  EXPECT_EQ(c.num_experts_per_tok, 4);
  EXPECT_EQ(c.moe_intermediate_size, 1792);
  EXPECT_EQ(c.mlp_only_layers, (std::vector<int>{0, 1}));
  EXPECT_TRUE(c.sigmoid_routing && c.use_expert_bias && c.norm_topk_prob);
  EXPECT_FLOAT_EQ(c.routed_scaling_factor, 1.0f);
  c = parse_model_config(tiny_config_json("lfm2_moe", R"(, "num_experts": 4, "num_experts_per_tok": 2,
      "num_dense_layers": 1, "use_expert_bias": false, "norm_topk_prob": false, "routed_scaling_factor": 2.5)"));
  EXPECT_EQ(c.mlp_only_layers, (std::vector<int>{0}));
  EXPECT_FALSE(c.use_expert_bias || c.norm_topk_prob);
  EXPECT_FLOAT_EQ(c.routed_scaling_factor, 2.5f);
  EXPECT_EQ(error_of([&] {
              parse_model_config(tiny_config_json("lfm2_moe", R"(, "num_experts": 2, "num_experts_per_tok": 3)"));
            }),
            "[config] lfm2_moe needs num_experts >= num_experts_per_tok >= 1 and moe_intermediate_size >= 1");
}
