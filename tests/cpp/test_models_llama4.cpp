// llama4_text: transformers' and mlx-lm's names of each layer's feed_forward and its experts read as the decoder's
// mlp / switch_mlp and written back the same, and a model built from them.
#include <gtest/gtest.h>

#include "mlxgp/checkpoint_names.h"
#include "models/model_names.h"
#include "test_models_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using namespace mlxgp::testing;

namespace {

// Two layers: a dense one (intermediate_size_mlp 24), then experts (4 x 8 wide) beside the shared one.
const char* kLlama4 = R"(, "head_dim": 8, "intermediate_size": 8, "intermediate_size_mlp": 24,
    "num_local_experts": 4, "interleave_moe_layer_step": 2, "attention_chunk_size": 4, "floor_scale": 2)";

// transformers' checkpoint names and layouts.
WeightMap llama4_checkpoint(const ModelConfig& c) {
  WeightMap w;
  uint64_t n = 0;
  auto rnd = [&](const mx::Shape& s) { return mx::random::normal(s, 0.0f, 0.2f, mx::random::key(++n)); };
  const int D = c.hidden_size, E = c.num_experts, I = c.moe_intermediate_size;
  w.emplace("model.embed_tokens.weight", rnd({c.vocab_size, D}));
  w.emplace("lm_head.weight", rnd({c.vocab_size, D}));
  w.emplace("model.norm.weight", rnd({D}));
  for (int i = 0; i < 2; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    w.emplace(p + "input_layernorm.weight", rnd({D}));
    w.emplace(p + "post_attention_layernorm.weight", rnd({D}));
    w.emplace(p + "self_attn.q_proj.weight", rnd({32, D}));
    w.emplace(p + "self_attn.k_proj.weight", rnd({16, D}));
    w.emplace(p + "self_attn.v_proj.weight", rnd({16, D}));
    w.emplace(p + "self_attn.o_proj.weight", rnd({D, 32}));
    const std::string f = p + "feed_forward.";
    if (i == 0) {
      for (const char* proj : {"gate_proj", "up_proj"}) w.emplace(f + proj + ".weight", rnd({24, D}));
      w.emplace(f + "down_proj.weight", rnd({D, 24}));
      continue;
    }
    w.emplace(f + "router.weight", rnd({E, D}));
    w.emplace(f + "experts.gate_up_proj", rnd({E, D, 2 * I}));
    w.emplace(f + "experts.down_proj", rnd({E, I, D}));
    for (const char* proj : {"gate_proj", "up_proj"}) w.emplace(f + "shared_expert." + proj + ".weight", rnd({I, D}));
    w.emplace(f + "shared_expert.down_proj.weight", rnd({D, I}));
  }
  return w;
}

bool same_array(const mx::array& a, const mx::array& b) {
  return a.shape() == b.shape() && mx::array_equal(a, b).item<bool>();
}

}  // namespace

TEST(Llama4, ExpertNamesBothWays) {
  const auto c = parse_model_config(tiny_config_json("llama4_text", kLlama4));
  const auto hf = llama4_checkpoint(c);
  const auto w = to_model_names(c, hf);
  const std::string m = "model.layers.1.mlp.";
  // gate_up_proj [E, hidden, 2I]: gate's columns, then up's, each as [E, out, in].
  const auto& gu = hf.at("model.layers.1.feed_forward.experts.gate_up_proj");
  EXPECT_TRUE(
      same_array(w.at(m + "switch_mlp.gate_proj.weight"), mx::swapaxes(mx::slice(gu, {0, 0, 0}, {4, 32, 8}), 1, 2)));
  EXPECT_TRUE(
      same_array(w.at(m + "switch_mlp.up_proj.weight"), mx::swapaxes(mx::slice(gu, {0, 0, 8}, {4, 32, 16}), 1, 2)));
  EXPECT_TRUE(same_array(w.at(m + "switch_mlp.down_proj.weight"),
                         mx::swapaxes(hf.at("model.layers.1.feed_forward.experts.down_proj"), 1, 2)));
  EXPECT_TRUE(w.count(m + "router.weight") && w.count("model.layers.0.mlp.gate_proj.weight"));
  // Back to transformers' layout unchanged; mlx-lm's SwitchGLU under feed_forward.experts.
  const auto back = to_checkpoint_names(c, w, CheckpointLayout::Hf);
  ASSERT_EQ(back.size(), hf.size());
  for (auto& [name, a] : hf) EXPECT_TRUE(back.count(name) && same_array(back.at(name), a)) << name;
  const auto mlx_lm = to_checkpoint_names(c, w, CheckpointLayout::MlxLm);
  EXPECT_TRUE(same_array(mlx_lm.at("model.layers.1.feed_forward.experts.gate_proj.weight"),
                         w.at(m + "switch_mlp.gate_proj.weight")));
  const auto again = to_model_names(c, mlx_lm);
  for (auto& [name, a] : w) EXPECT_TRUE(again.count(name) && same_array(again.at(name), a)) << name;
  // The model runs from either: logits from the transformers names equal those from mlx-lm's.
  auto ids = mx::array({3, 9, 12, 5, 7, 1, 30, 2, 8}, {1, 9});
  auto a = create_model(c, to_model_names(c, hf)), b = create_model(c, to_model_names(c, mlx_lm));
  auto ca = a->make_caches(), cb = b->make_caches();
  EXPECT_TRUE(mx::allclose(a->forward(ids, ca), b->forward(ids, cb)).item<bool>());
}

TEST(Llama4, MultimodalCheckpointReadsItsLanguageModel) {
  // Llama4Config: text_config a Llama4TextConfig, the head untied unless the outer config says otherwise (its default
  // is false, where the other wrappers' is true); the tensors under language_model.* with the vision tower dropped.
  auto c = parse_model_config(R"({"model_type": "llama4", "text_config": {"vocab_size": 64, "hidden_size": 32,
      "intermediate_size": 8, "num_hidden_layers": 2, "num_attention_heads": 4, "head_dim": 8}, "vision_config": {}})");
  EXPECT_EQ(c.model_type, "llama4_text");
  EXPECT_EQ(c.multimodal_model_type, "llama4");
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(error_of([] { parse_model_config(R"({"model_type": "llama4", "text_config": {"model_type": "llama"}})"); }),
            "[config] llama4's text_config has model_type \"llama\" (supported: llama4_text)");
  WeightMap w{{"language_model.model.layers.0.feed_forward.gate_proj.weight", mx::zeros({2})},
              {"language_model.lm_head.weight", mx::zeros({2})},
              {"vision_model.patch_embedding.linear.weight", mx::zeros({2})},
              {"multi_modal_projector.linear_1.weight", mx::zeros({2})}};
  auto m = to_model_names(c, w);
  EXPECT_EQ(m.size(), 2u);
  EXPECT_TRUE(m.count("model.layers.0.mlp.gate_proj.weight") && m.count("lm_head.weight"));
  auto back = to_checkpoint_names(c, m, CheckpointLayout::Hf);
  EXPECT_TRUE(back.count("language_model.model.layers.0.feed_forward.gate_proj.weight") &&
              back.count("language_model.lm_head.weight"));
}
