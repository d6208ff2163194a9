// gpt2's and gpt_bigcode's config names and checkpoint layouts (the logits themselves:
// tests/parity/test_architectures.py).
#include <gtest/gtest.h>

#include "mlxgp/model_config.h"
#include "models/model_names.h"
#include "test_models_util.h"

using namespace mlxgp;
using namespace mlxgp::testing;

TEST(Gpt2Config, ReadsGpt2NamesWithGpt2ConfigDefaults) {
  auto c = parse_model_config(R"({"model_type": "gpt2", "n_embd": 64, "n_layer": 3, "n_head": 4, "n_positions": 32,
      "vocab_size": 100, "n_inner": null, "layer_norm_epsilon": 1e-4})");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_hidden_layers, 3);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.intermediate_size, 256);  // n_inner null: 4 * n_embd
  EXPECT_EQ(c.max_position_embeddings, 32);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-4f);
  EXPECT_EQ(c.hidden_act, "gelu_new");
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.attention_bias && c.mlp_bias);
  EXPECT_EQ(c.eos_token_id, (std::vector<int>{50256}));
  EXPECT_EQ(c.rope_layers, (std::vector<bool>{false, false, false}));
  EXPECT_TRUE(c.scale_attn_weights);
  EXPECT_FALSE(c.scale_attn_by_inverse_layer_idx);
  auto d = parse_model_config(R"({"model_type": "gpt2", "n_inner": 48, "n_embd": 12, "n_head": 4, "n_layer": 1,
      "scale_attn_weights": false, "scale_attn_by_inverse_layer_idx": true})");
  EXPECT_EQ(d.intermediate_size, 48);
  EXPECT_EQ(d.head_dim, 3);  // odd heads are fine without RoPE
  EXPECT_EQ(d.vocab_size, 50257);
  EXPECT_FALSE(d.scale_attn_weights);
  EXPECT_TRUE(d.scale_attn_by_inverse_layer_idx);
  // transformers' attribute_map: hidden_size etc. alias GPT-2's names; rms_norm_eps / hidden_act are not GPT-2's.
  auto e = parse_model_config(R"({"model_type": "gpt2", "hidden_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 2, "max_position_embeddings": 16, "rms_norm_eps": 0.5, "hidden_act": "relu"})");
  EXPECT_EQ(e.hidden_size, 32);
  EXPECT_EQ(e.num_hidden_layers, 2);
  EXPECT_EQ(e.num_attention_heads, 2);
  EXPECT_EQ(e.max_position_embeddings, 16);
  EXPECT_EQ(e.intermediate_size, 128);
  EXPECT_FLOAT_EQ(e.rms_norm_eps, 1e-5f);
  EXPECT_EQ(e.hidden_act, "gelu_new");
  EXPECT_EQ(error_of([] { parse_model_config(R"({"model_type": "gpt2", "activation_function": "relu"})"); }),
            "[config] unsupported activation_function 'relu' (supported: gelu_new, gelu_pytorch_tanh, gelu_fast, gelu, "
            "silu, swish)");
  EXPECT_NE(error_of([] {
              parse_model_config(R"({"model_type": "gpt2", "add_cross_attention": true})");
            }).find("[config] add_cross_attention"),
            std::string::npos);
}

TEST(Gpt2Names, HfConv1dAndMlxLmLayoutsMapToTheDecoder) {
  auto a = mx::reshape(mx::arange(6, mx::float32), {2, 3});  // a Conv1D weight [in 2, out 3]
  WeightMap hf{{"transformer.h.0.attn.c_attn.weight", a},
               {"transformer.h.0.attn.bias", mx::ones({1, 1, 4, 4}, mx::bool_)},
               {"transformer.wpe.weight", a},
               {"lm_head.weight", a}};
  auto w = gpt2_model_names(hf);
  ASSERT_EQ(w.size(), 3u);  // the causal-mask buffer is dropped
  const auto& qkv = w.at("model.layers.0.self_attn.qkv_proj.weight");
  EXPECT_EQ(qkv.shape(), (mx::Shape{3, 2}));
  EXPECT_TRUE(mx::array_equal(qkv, mx::transpose(a)).item<bool>());
  EXPECT_EQ(w.at("model.embed_positions.weight").shape(), (mx::Shape{2, 3}));  // embeddings are not Conv1D
  EXPECT_EQ(w.count("lm_head.weight"), 1u);
  // The original checkpoints' bare names are HF's layout too; mlx-lm's (model.*) is already [out, in].
  EXPECT_EQ(gpt2_model_names({{"h.1.mlp.c_fc.weight", a}}).at("model.layers.1.mlp.c_fc.weight").shape(),
            (mx::Shape{3, 2}));
  WeightMap mlx{{"model.h.2.mlp.c_proj.scales", a}, {"model.ln_f.bias", a}, {"model.wte.biases", a}};
  auto m = gpt2_model_names(mlx);
  EXPECT_EQ(m.at("model.layers.2.mlp.c_proj.scales").shape(), (mx::Shape{2, 3}));
  EXPECT_EQ(m.count("model.norm.bias") + m.count("model.embed_tokens.biases"), 2u);
  // Decoder names pass through, and convert's reverse gives mlx-lm's names back.
  EXPECT_EQ(gpt2_model_names(m).size(), 3u);
  auto back = gpt2_checkpoint_names(m, CheckpointLayout::MlxLm);
  for (auto& [name, array] : mlx) EXPECT_EQ(back.count(name), 1u) << name;
  // transformers' layout: transformer.* with the Conv1D weights back to [in, out].
  auto hf_back = gpt2_checkpoint_names(w, CheckpointLayout::Hf);
  EXPECT_TRUE(mx::array_equal(hf_back.at("transformer.h.0.attn.c_attn.weight"), a).item<bool>());
  EXPECT_EQ(hf_back.count("transformer.wpe.weight") + hf_back.count("lm_head.weight"), 2u);
}

TEST(Gpt2Config, GptBigCodeReadsMultiQueryAndItsOwnDefaults) {
  // GPTBigCodeConfig: multi_query (default true) is one key/value head; gelu_pytorch_tanh; no per-layer scaling.
  auto c = parse_model_config(R"({"model_type": "gpt_bigcode", "n_embd": 64, "n_layer": 2, "n_head": 4,
      "n_positions": 32, "vocab_size": 100, "scale_attn_by_inverse_layer_idx": true})");
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 1);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.intermediate_size, 256);
  EXPECT_EQ(c.hidden_act, "gelu_pytorch_tanh");
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.scale_attn_weights);
  EXPECT_FALSE(c.scale_attn_by_inverse_layer_idx);  // not a GPTBigCodeConfig field
  EXPECT_EQ(c.rope_layers, (std::vector<bool>{false, false}));
  auto m = parse_model_config(R"({"model_type": "gpt_bigcode", "n_embd": 64, "n_layer": 1, "n_head": 4,
      "multi_query": false, "activation_function": "gelu_fast", "scale_attn_weights": false})");
  EXPECT_EQ(m.num_key_value_heads, 4);
  EXPECT_EQ(m.hidden_act, "gelu_fast");
  EXPECT_FALSE(m.scale_attn_weights);
  EXPECT_EQ(error_of([] { parse_model_config(R"({"model_type": "gpt_bigcode", "add_cross_attention": true})"); }),
            "[config] add_cross_attention is not supported (gpt_bigcode runs as a decoder only)");
}

TEST(Gpt2Names, GptBigCodeLinearWeightsAndPerHeadQkvRows) {
  // [out, in] weights under transformer.* (transformers' and mlx-lm's alike): nothing transposed. A c_attn of
  // 3 x n_embd rows (no multi_query) holds them per head: query_key_value; multi-query rows are [q; k; v].
  auto w = [](int rows, int cols) { return mx::zeros({rows, cols}); };
  WeightMap mha{{"transformer.h.0.attn.c_attn.weight", w(12, 4)},
                {"transformer.h.0.attn.c_attn.bias", w(12, 1)},
                {"transformer.h.0.attn.c_proj.weight", w(4, 4)},
                {"transformer.h.0.mlp.c_fc.weight", w(8, 4)},
                {"transformer.wte.weight", w(10, 4)},
                {"transformer.ln_f.weight", w(4, 1)}};
  auto a = gpt2_model_names(mha, true);
  EXPECT_EQ(a.at("model.layers.0.self_attn.query_key_value.weight").shape(), (mx::Shape{12, 4}));
  EXPECT_EQ(a.count("model.layers.0.self_attn.query_key_value.bias"), 1u);
  EXPECT_EQ(a.at("model.layers.0.mlp.c_fc.weight").shape(), (mx::Shape{8, 4}));  // not transposed
  EXPECT_EQ(a.count("model.embed_tokens.weight") + a.count("model.norm.weight"), 2u);
  WeightMap mqa{{"transformer.h.1.attn.c_attn.weight", w(8, 4)}, {"transformer.h.1.attn.c_proj.weight", w(4, 4)}};
  EXPECT_EQ(gpt2_model_names(mqa, true).count("model.layers.1.self_attn.qkv_proj.weight"), 1u);
  // Back to transformer.* in both layouts, shapes as they were.
  for (auto layout : {CheckpointLayout::Hf, CheckpointLayout::MlxLm}) {
    auto back = gpt2_checkpoint_names(a, layout, true);
    ASSERT_EQ(back.size(), mha.size());
    for (auto& [name, array] : mha) EXPECT_EQ(back.at(name).shape(), array.shape()) << name;
  }
}
