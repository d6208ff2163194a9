// deepseek_v2 / v3 and the types built from their parts (glm4_moe_lite, dots1): the config's latent-attention and
// routing fields (and what is refused), mlx-lm's split kv_b_proj and stacked experts read and written, and the latent
// cache a model decodes with (one head of kv_lora_rank + qk_rope_head_dim).
#include <gtest/gtest.h>

#include "mlxgp/checkpoint_names.h"
#include "mlxgp/kv_cache.h"
#include "models/model_names.h"
#include "test_models_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using namespace mlxgp::testing;

namespace {

const char* kLatent = R"(, "num_key_value_heads": 4, "kv_lora_rank": 12, "qk_nope_head_dim": 6,
    "qk_rope_head_dim": 4, "v_head_dim": 5, "n_routed_experts": 4, "num_experts_per_tok": 2,
    "moe_intermediate_size": 8, "first_k_dense_replace": 1)";

ModelConfig deepseek(const std::string& type, const std::string& extra = "") {
  return parse_model_config(tiny_config_json(type, kLatent + extra));
}

// A deepseek_v2 model of the config above (q_lora_rank null: q_proj), its second layer sparse.
WeightMap deepseek_weights(const ModelConfig& c) {
  WeightMap w;
  uint64_t n = 0;
  auto rnd = [&](const mx::Shape& s) { return mx::random::normal(s, 0.0f, 0.2f, mx::random::key(++n)); };
  auto ones = [&](int d) { return mx::add(mx::ones({d}), rnd({d})); };
  const int H = c.num_attention_heads, D = c.hidden_size;
  w.emplace("model.embed_tokens.weight", rnd({c.vocab_size, D}));
  w.emplace("lm_head.weight", rnd({c.vocab_size, D}));
  w.emplace("model.norm.weight", ones(D));
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    w.emplace(p + "input_layernorm.weight", ones(D));
    w.emplace(p + "post_attention_layernorm.weight", ones(D));
    w.emplace(p + "self_attn.q_proj.weight", rnd({H * (c.qk_nope_head_dim + c.qk_rope_head_dim), D}));
    w.emplace(p + "self_attn.kv_a_proj_with_mqa.weight", rnd({c.kv_lora_rank + c.qk_rope_head_dim, D}));
    w.emplace(p + "self_attn.kv_a_layernorm.weight", ones(c.kv_lora_rank));
    w.emplace(p + "self_attn.kv_b_proj.weight", rnd({H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}));
    w.emplace(p + "self_attn.o_proj.weight", rnd({D, H * c.v_head_dim}));
    if (i == 0) {
      w.emplace(p + "mlp.gate_proj.weight", rnd({c.intermediate_size, D}));
      w.emplace(p + "mlp.up_proj.weight", rnd({c.intermediate_size, D}));
      w.emplace(p + "mlp.down_proj.weight", rnd({D, c.intermediate_size}));
      continue;
    }
    const int E = c.num_experts, I = c.moe_intermediate_size, S = c.shared_expert_intermediate_size;
    w.emplace(p + "mlp.gate.weight", rnd({E, D}));
    w.emplace(p + "mlp.switch_mlp.gate_proj.weight", rnd({E, I, D}));
    w.emplace(p + "mlp.switch_mlp.up_proj.weight", rnd({E, I, D}));
    w.emplace(p + "mlp.switch_mlp.down_proj.weight", rnd({E, D, I}));
    w.emplace(p + "mlp.shared_experts.gate_proj.weight", rnd({S, D}));
    w.emplace(p + "mlp.shared_experts.up_proj.weight", rnd({S, D}));
    w.emplace(p + "mlp.shared_experts.down_proj.weight", rnd({D, S}));
  }
  return w;
}

}  // namespace

TEST(Config, DeepseekLatentAttentionAndRouting) {
  auto v2 = deepseek("deepseek_v2", R"(, "q_lora_rank": null, "topk_method": "group_limited_greedy",
      "n_group": 2, "topk_group": 1, "routed_scaling_factor": 16.0)");
  EXPECT_EQ(v2.q_lora_rank, 0);
  EXPECT_EQ(v2.kv_lora_rank, 12);
  // The cache's view: one head of latent + shared rotary key.
  EXPECT_EQ(v2.num_key_value_heads, 1);
  EXPECT_EQ(v2.head_dim, 16);
  EXPECT_TRUE(v2.rope_interleave);  // DeepseekV2's complex rotation: adjacent pairs
  EXPECT_TRUE(v2.group_limited_greedy);
  EXPECT_FALSE(v2.sigmoid_routing);
  EXPECT_FALSE(v2.norm_topk_prob);
  EXPECT_FLOAT_EQ(v2.routed_scaling_factor, 16.0f);
  EXPECT_EQ(v2.shared_expert_intermediate_size, 16);  // DeepseekV2Config: 2 shared experts
  EXPECT_EQ(v2.mlp_only_layers, (std::vector<int>{0}));
  auto v3 = deepseek("deepseek_v3", R"(, "q_lora_rank": 8, "n_group": 2, "topk_group": 1, "rope_interleave": false)");
  EXPECT_EQ(v3.q_lora_rank, 8);
  EXPECT_TRUE(v3.sigmoid_routing);
  EXPECT_TRUE(v3.norm_topk_prob);
  EXPECT_FALSE(v3.rope_interleave);
  EXPECT_FLOAT_EQ(v3.routed_scaling_factor, 2.5f);  // DeepseekV3Config's default
  EXPECT_EQ(v3.shared_expert_intermediate_size, 8);
  for (auto [extra, message] : std::initializer_list<std::pair<const char*, const char*>>{
           {R"(, "norm_topk_prob": true)",
            "[config] norm_topk_prob true is not supported for deepseek_v2 (transformers' router ignores it)"},
           {R"(, "topk_method": "noaux_tc")",
            "[config] unsupported topk_method 'noaux_tc' (supported: greedy, group_limited_greedy)"},
           {R"(, "kv_lora_rank": 0)", "[config] field 'kv_lora_rank' must be a positive integer, got 0"},
           {R"(, "qk_rope_head_dim": 3)", "[config] qk_rope_head_dim must be even for rotary embeddings"}})
    EXPECT_EQ(error_of([&] { deepseek("deepseek_v2", extra); }), message) << extra;
  EXPECT_EQ(error_of([] {
              parse_model_config(tiny_config_json("deepseek_v3", R"(, "kv_lora_rank": 12, "n_group": 1,
                  "topk_group": 1, "n_routed_experts": 4, "num_experts_per_tok": 2)"));
            }),
            "[config] num_key_value_heads must equal num_attention_heads for latent attention (got 2 and 4)");
  EXPECT_EQ(
      error_of([] {
        parse_model_config(tiny_config_json("deepseek_v2", R"(, "num_key_value_heads": 4, "n_routed_experts": 4)"));
      }),
      "[config] num_experts_per_tok is required (DeepseekV2Config has no default)");
}

TEST(Config, Glm4MoeLiteDenseLayersFromMlpLayerTypes) {
  // GLM-4.7-Flash: V3's attention and routing with Glm4MoeLiteConfig's defaults; dense layers from mlp_layer_types
  // (a dense first layer when absent), refused where first_k_dense_replace (mlx-lm's reading) says otherwise.
  auto g = parse_model_config(tiny_config_json("glm4_moe_lite", R"(, "num_key_value_heads": 4, "num_hidden_layers": 3,
      "n_routed_experts": 4, "mlp_layer_types": ["dense", "sparse", "dense"])"));
  EXPECT_EQ(g.mlp_only_layers, (std::vector<int>{0, 2}));
  EXPECT_EQ(g.q_lora_rank, 768);
  EXPECT_EQ(g.qk_nope_head_dim, 192);
  EXPECT_EQ(g.v_head_dim, 256);
  EXPECT_EQ(g.head_dim, 512 + 64);
  EXPECT_EQ(g.num_experts_per_tok, 4);
  EXPECT_FLOAT_EQ(g.routed_scaling_factor, 1.8f);
  EXPECT_TRUE(g.sigmoid_routing);
  auto d =
      parse_model_config(tiny_config_json("glm4_moe_lite", R"(, "num_key_value_heads": 4, "n_routed_experts": 4)"));
  EXPECT_EQ(d.mlp_only_layers, (std::vector<int>{0}));
  EXPECT_EQ(error_of([] {
              parse_model_config(tiny_config_json("glm4_moe_lite", R"(, "num_key_value_heads": 4,
                  "n_routed_experts": 4, "first_k_dense_replace": 2)"));
            }),
            "[config] mlp_layer_types and first_k_dense_replace disagree on layer 1");
  EXPECT_EQ(error_of([] {
              parse_model_config(tiny_config_json("glm4_moe_lite", R"(, "num_key_value_heads": 4,
                  "n_routed_experts": 4, "mlp_layer_types": ["dense", "moe"])"));
            }),
            "[config] mlp_layer_types entries must be \"dense\" or \"sparse\"");
}

TEST(Config, Dots1RequiresItsExpertsAndSlidesFromMaxWindowLayers) {
  // Dots1Config: qwen3's attention with DeepSeek-V3's experts; no defaults for the expert counts.
  const std::string experts = R"(, "n_routed_experts": 4, "num_experts_per_tok": 2, "n_shared_experts": 1)";
  auto d = parse_model_config(tiny_config_json("dots1", experts + R"(, "num_hidden_layers": 3, "sliding_window": 8,
      "max_window_layers": 2, "first_k_dense_replace": 1)"));
  EXPECT_EQ(d.sliding_layers, (std::vector<bool>{false, false, true}));
  EXPECT_EQ(d.mlp_only_layers, (std::vector<int>{0}));
  EXPECT_TRUE(d.sigmoid_routing);
  EXPECT_FALSE(d.norm_topk_prob);
  EXPECT_EQ(d.moe_intermediate_size, 1408);
  EXPECT_FALSE(d.output_router_logits);
  // Dots1Config's defaults: window 4096 from layer 62 on (none of these 2 layers), every layer sparse.
  auto e = parse_model_config(tiny_config_json("dots1", experts));
  EXPECT_EQ(e.sliding_layers, (std::vector<bool>{false, false}));
  EXPECT_TRUE(e.mlp_only_layers.empty());
  EXPECT_EQ(error_of([] {
              parse_model_config(tiny_config_json("dots1", R"(, "n_routed_experts": 4, "num_experts_per_tok": 2)"));
            }),
            "[config] n_shared_experts is required (Dots1Config has no default)");
  // mlx-lm stacks its experts under mlp.experts.<proj>; transformers writes one tensor an expert.
  WeightMap mlx{{"model.layers.1.mlp.experts.gate_proj.weight", mx::zeros({4, 2, 3})},
                {"model.layers.1.mlp.experts.down_proj.scales", mx::zeros({4, 3, 1})}};
  auto ours = to_model_names("dots1", mlx);
  EXPECT_TRUE(ours.count("model.layers.1.mlp.switch_mlp.gate_proj.weight"));
  EXPECT_TRUE(ours.count("model.layers.1.mlp.switch_mlp.down_proj.scales"));
  EXPECT_TRUE(
      to_checkpoint_names("dots1", ours, CheckpointLayout::MlxLm).count("model.layers.1.mlp.experts.gate_proj.weight"));
  auto hf = to_checkpoint_names("dots1", ours, CheckpointLayout::Hf);
  EXPECT_TRUE(hf.count("model.layers.1.mlp.experts.3.gate_proj.weight"));
}

TEST(Models, DeepseekMlxLmSplitsKvBProjAndDropsMtpLayers) {
  auto c = deepseek("deepseek_v3", R"(, "q_lora_rank": 8, "n_group": 1, "topk_group": 1)");
  const int H = 4, nope = 6, v = 5, rank = 12;
  auto kv_b = mx::random::normal({H * (nope + v), rank}, mx::random::key(3));
  WeightMap ours{{"model.layers.0.self_attn.kv_b_proj.weight", kv_b}};
  auto mlx = to_checkpoint_names(c, ours, CheckpointLayout::MlxLm);
  ASSERT_EQ(mlx.size(), 2u);
  EXPECT_EQ(mlx.at("model.layers.0.self_attn.embed_q.weight").shape(), (mx::Shape{H, rank, nope}));
  EXPECT_EQ(mlx.at("model.layers.0.self_attn.unembed_out.weight").shape(), (mx::Shape{H, v, rank}));
  // Head 1's first key row is embed_q[1][:, 0].
  EXPECT_TRUE(mx::allclose(mx::slice(mlx.at("model.layers.0.self_attn.embed_q.weight"), {1, 0, 0}, {2, rank, 1}),
                           mx::reshape(mx::slice(kv_b, {nope + v, 0}, {nope + v + 1, rank}), {1, rank, 1}))
                  .item<bool>());
  mlx.emplace("model.layers.2.self_attn.kv_a_layernorm.weight", mx::zeros({rank}));  // V3's MTP layer: dropped
  auto back = to_model_names(c, mlx);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_TRUE(mx::array_equal(back.at("model.layers.0.self_attn.kv_b_proj.weight"), kv_b).item<bool>());
  EXPECT_EQ(to_checkpoint_names(c, ours, CheckpointLayout::Hf).size(), 1u);  // transformers' names are ours
}

TEST(Models, DeepseekCachesOneLatentHeadAndDecodesAsOneForward) {
  auto c = deepseek("deepseek_v2", R"(, "q_lora_rank": null)");
  auto model = create_model(c, deepseek_weights(c));
  auto ids = mx::array({3, 9, 27, 5, 11, 60, 7}, {1, 7});
  KVCacheList whole = model->make_caches();
  auto full = model->forward(ids, whole);
  EXPECT_EQ(whole[0]->update(mx::zeros({1, 1, 1, 16}), mx::zeros({1, 1, 1, 16})).first.shape(),
            (mx::Shape{1, 1, 8, 16}));
  KVCacheList caches = model->make_caches();
  model->forward(mx::slice(ids, {0, 0}, {1, 4}), caches);
  std::vector<mx::array> steps;
  for (int t = 4; t < 7; ++t) steps.push_back(model->forward(mx::slice(ids, {0, t}, {1, t + 1}), caches));
  auto decoded = mx::concatenate(steps, 1);
  EXPECT_TRUE(mx::allclose(decoded, mx::slice(full, {0, 4, 0}, {1, 7, c.vocab_size}), 1e-4, 1e-4).item<bool>());
}
