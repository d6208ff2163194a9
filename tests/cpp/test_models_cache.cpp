// KV cache behaviour, the model registry, config parsing, and self-consistency of the forward pass:
// cached decoding == one full forward, quantized linears == their dequantized dense form.
#include <gtest/gtest.h>

#include <algorithm>

#include "io/quantization_modules.h"
#include "mlxgp/checkpoint_names.h"
#include "mlxgp/loader.h"
#include "models/model_names.h"
#include "models/moe.h"
#include "test_models_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using namespace mlxgp::testing;

namespace {

mx::array kv(int t, float start) {
  // [1, 2, t, 4] with distinct values per position.
  auto pos = mx::add(mx::arange(start, start + t, 1.0f), mx::zeros({1, 2, 4, t}));
  return mx::transpose(pos, {0, 1, 3, 2});
}

mx::array ids_array(const std::vector<int>& ids, int from, int to) {
  return mx::array(ids.data() + from, {1, to - from}, mx::int32);
}

}  // namespace

TEST(KVCache, UpdateGrowsInStepsAndKeepsContents) {
  StandardKVCache c(4);
  EXPECT_EQ(c.offset(), 0);
  auto [k1, v1] = c.update(kv(3, 0), kv(3, 100));
  EXPECT_EQ(c.offset(), 3);
  EXPECT_EQ(k1.shape(), (mx::Shape{1, 2, 3, 4}));
  auto [k2, v2] = c.update(kv(1, 3), kv(1, 103));  // exactly fills the first step
  auto [k3, v3] = c.update(kv(6, 4), kv(6, 104));  // grows past it
  EXPECT_EQ(c.offset(), 10);
  EXPECT_EQ(k3.shape(), (mx::Shape{1, 2, 10, 4}));
  EXPECT_EQ(max_abs_diff(k3, kv(10, 0)), 0.0f);
  EXPECT_EQ(max_abs_diff(v3, kv(10, 100)), 0.0f);
}

TEST(KVCache, TrimDropsPositionsAndNextUpdateOverwrites) {
  StandardKVCache c(4);
  c.update(kv(6, 0), kv(6, 0));
  EXPECT_EQ(c.trim(2), 2);
  EXPECT_EQ(c.offset(), 4);
  EXPECT_EQ(c.trim(100), 4);  // cannot drop more than stored
  EXPECT_EQ(c.offset(), 0);
  c.update(kv(2, 50), kv(2, 50));
  auto [k, v] = c.update(kv(5, 52), kv(5, 52));  // growth after a trim keeps only valid positions
  EXPECT_EQ(max_abs_diff(k, kv(7, 50)), 0.0f);
  EXPECT_TRUE(c.is_trimmable());
  EXPECT_NE(error_of([&] { c.trim(-1); }).find("[cache]"), std::string::npos);
}

TEST(KVCache, CloneIsIndependent) {
  StandardKVCache c(4);
  c.update(kv(3, 0), kv(3, 0));
  auto d = c.clone();
  c.update(kv(1, 99), kv(1, 99));
  auto [k, v] = d->update(kv(1, 3), kv(1, 3));
  EXPECT_EQ(d->offset(), 4);
  EXPECT_EQ(max_abs_diff(k, kv(4, 0)), 0.0f);
  auto [k2, v2] = c.update(kv(1, 5), kv(1, 5));
  EXPECT_EQ(k2.shape(2), 5);
}

TEST(KVCache, RejectsMismatchedShapes) {
  StandardKVCache c;
  c.update(kv(2, 0), kv(2, 0));
  EXPECT_NE(error_of([&] { c.update(mx::zeros({1, 3, 1, 4}), mx::zeros({1, 3, 1, 4})); }).find("[cache]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.update(mx::zeros({2, 4}), mx::zeros({2, 4})); }).find("[cache]"), std::string::npos);
}

TEST(Registry, ListsBuiltinsAndRejectsUnknown) {
  // (gemma3, gemma4, mistral3, qwen3_5 and qwen3_5_moe: multimodal checkpoints, read as their language model's type)
  auto types = supported_model_types();
  EXPECT_EQ(types, (std::vector<std::string>{"apertus",
                                             "arcee",
                                             "cohere",
                                             "cohere2",
                                             "deepseek_v2",
                                             "deepseek_v3",
                                             "dots1",
                                             "ernie4_5",
                                             "ernie4_5_moe",
                                             "exaone4",
                                             "gemma",
                                             "gemma2",
                                             "gemma3",
                                             "gemma3_text",
                                             "gemma4",
                                             "gemma4_text",
                                             "glm",
                                             "glm4",
                                             "glm4_moe",
                                             "glm4_moe_lite",
                                             "gpt2",
                                             "gpt_bigcode",
                                             "gpt_neox",
                                             "gpt_oss",
                                             "granite",
                                             "granitemoe",
                                             "helium",
                                             "hunyuan_v1_dense",
                                             "hunyuan_v1_moe",
                                             "lfm2",
                                             "lfm2_moe",
                                             "llama",
                                             "llama4",
                                             "llama4_text",
                                             "ministral3",
                                             "mistral",
                                             "mistral3",
                                             "mixtral",
                                             "nemotron",
                                             "olmo",
                                             "olmo2",
                                             "olmo3",
                                             "olmoe",
                                             "phi",
                                             "phi3",
                                             "phimoe",
                                             "qwen2",
                                             "qwen2_5_vl",
                                             "qwen2_moe",
                                             "qwen2_vl",
                                             "qwen3",
                                             "qwen3_5",
                                             "qwen3_5_moe",
                                             "qwen3_5_moe_text",
                                             "qwen3_5_text",
                                             "qwen3_moe",
                                             "qwen3_next",
                                             "qwen3_vl",
                                             "seed_oss",
                                             "smollm3",
                                             "stablelm",
                                             "starcoder2"}));
  ModelConfig c = parse_model_config(tiny_config_json("rwkv"));
  EXPECT_EQ(error_of([&] { create_model(c, tiny_weights()); }),
            "[model] unknown model_type 'rwkv' (supported: apertus, arcee, cohere, cohere2, deepseek_v2, deepseek_v3, "
            "dots1, ernie4_5, ernie4_5_moe, exaone4, gemma, "
            "gemma2, gemma3, gemma3_text, gemma4, gemma4_text, glm, glm4, glm4_moe, glm4_moe_lite, gpt2, gpt_bigcode, "
            "gpt_neox, gpt_oss, granite, granitemoe, helium, hunyuan_v1_dense, hunyuan_v1_moe, lfm2, lfm2_moe, llama, "
            "llama4, "
            "llama4_text, "
            "ministral3, mistral, mistral3, mixtral, nemotron, olmo, olmo2, olmo3, olmoe, phi, phi3, phimoe, "
            "qwen2, qwen2_5_vl, qwen2_moe, qwen2_vl, qwen3, qwen3_5, qwen3_5_moe, qwen3_5_moe_text, qwen3_5_text, "
            "qwen3_moe, qwen3_next, qwen3_vl, seed_oss, smollm3, stablelm, "
            "starcoder2)");
}

TEST(Config, ParsesBothRopeLayoutsAndHfDefaults) {
  auto c = parse_model_config(tiny_config_json("llama", R"(, "eos_token_id": [2, 7],
      "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})"));
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  ASSERT_TRUE(c.rope_scaling);
  EXPECT_EQ(c.rope_scaling->rope_type, "llama3");
  EXPECT_FLOAT_EQ(c.rope_scaling->factor, 32.0f);
  EXPECT_EQ(c.eos_token_id, (std::vector<int>{2, 7}));
  EXPECT_EQ(c.head_dim, 8);  // hidden / heads when absent
  auto legacy = parse_model_config(tiny_config_json("llama", R"(, "rope_theta": 1e6, "eos_token_id": 3,
      "rope_scaling": {"type": "linear", "factor": 2.0}, "head_dim": 16)"));
  EXPECT_FLOAT_EQ(legacy.rope_theta, 1e6f);
  EXPECT_EQ(legacy.rope_scaling->rope_type, "linear");
  EXPECT_EQ(legacy.eos_token_id, (std::vector<int>{3}));
  EXPECT_EQ(legacy.head_dim, 16);
  auto qwen = parse_model_config(tiny_config_json("qwen2", R"(, "sliding_window": 16, "use_sliding_window": false)"));
  EXPECT_FALSE(qwen.sliding_window);
  EXPECT_EQ(
      error_of([] { parse_model_config(tiny_config_json("llama", R"(, "rope_scaling": {"rope_type": "dynamic"})")); }),
      "[config] unsupported rope_type 'dynamic' (supported: default, linear, llama3, longrope, yarn, proportional)");
  // Yarn as transformers resolves it: a null factor is max_position_embeddings / original, null betas and
  // 0 take 32 / 1, the top-level original length wins over the rope dict's.
  auto yarn = parse_model_config(tiny_config_json("llama", R"(, "max_position_embeddings": 256,
      "original_max_position_embeddings": 32, "rope_scaling": {"rope_type": "yarn", "factor": null,
        "original_max_position_embeddings": 64, "beta_fast": null, "beta_slow": 0, "mscale": 0.7, "truncate": false})"));
  ASSERT_TRUE(yarn.rope_scaling);
  EXPECT_EQ(yarn.rope_scaling->original_max_position_embeddings, 32);
  EXPECT_FLOAT_EQ(yarn.rope_scaling->factor, 8.0f);
  EXPECT_FLOAT_EQ(yarn.rope_scaling->beta_fast, 32.0f);
  EXPECT_FLOAT_EQ(yarn.rope_scaling->beta_slow, 1.0f);
  EXPECT_FLOAT_EQ(yarn.rope_scaling->mscale.value_or(0), 0.7f);
  EXPECT_FALSE(yarn.rope_scaling->mscale_all_dim);
  EXPECT_FALSE(yarn.rope_scaling->truncate);
  EXPECT_EQ(error_of([] { parse_model_config("[1, 2]"); }), "[config] config.json must be a JSON object");
  EXPECT_EQ(error_of([] { parse_model_config(tiny_config_json("llama", R"(, "hidden_size": -4)")); }),
            "[config] field 'hidden_size' is out of range");
}

// The later architectures' fields (values as transformers 5.24 saves them and as older files spell them).
TEST(Config, ParsesArchitectureFields) {
  auto g3 = parse_model_config(tiny_config_json("gemma3_text", R"(, "sliding_window": 8,
      "layer_types": ["sliding_attention", "full_attention"], "query_pre_attn_scalar": 24,
      "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                          "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}})"));
  EXPECT_EQ(g3.sliding_layers, (std::vector<bool>{true, false}));
  EXPECT_FLOAT_EQ(g3.rope_theta, 1e6f);
  EXPECT_FLOAT_EQ(*g3.sliding_rope_theta, 1e4f);
  EXPECT_FALSE(g3.sliding_rope_scaling.has_value());
  ASSERT_TRUE(g3.rope_scaling.has_value());
  EXPECT_FLOAT_EQ(g3.rope_scaling->factor, 8.0f);
  EXPECT_FLOAT_EQ(*g3.query_pre_attn_scalar, 24.0f);
  // Older gemma3 files: rope_local_base_freq and sliding_window_pattern; gemma2: even layers slide.
  auto old3 = parse_model_config(tiny_config_json("gemma3_text", R"(, "sliding_window": 8, "sliding_window_pattern": 2,
      "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0)"));
  EXPECT_EQ(old3.sliding_layers, (std::vector<bool>{true, false}));
  EXPECT_FLOAT_EQ(*old3.sliding_rope_theta, 1e4f);
  auto g2 =
      parse_model_config(tiny_config_json("gemma2", R"(, "sliding_window": 8, "hidden_activation": "gelu_pytorch_tanh",
      "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0)"));
  EXPECT_EQ(g2.sliding_layers, (std::vector<bool>{true, false}));
  EXPECT_EQ(g2.hidden_act, "gelu_pytorch_tanh");
  EXPECT_FLOAT_EQ(*g2.attn_logit_softcapping, 50.0f);
  // phi3: "su" is longrope; the top-level original length wins; factor from the two lengths.
  auto phi = parse_model_config(tiny_config_json("phi3", R"(, "max_position_embeddings": 4096,
      "original_max_position_embeddings": 1024, "partial_rotary_factor": 0.5,
      "rope_scaling": {"type": "su", "short_factor": [1, 2], "long_factor": [2, 3]})"));
  ASSERT_TRUE(phi.rope_scaling.has_value());
  EXPECT_EQ(phi.rope_scaling->rope_type, "longrope");
  EXPECT_EQ(phi.rope_scaling->original_max_position_embeddings, 1024);
  EXPECT_FLOAT_EQ(phi.rope_scaling->factor, 4.0f);
  EXPECT_FLOAT_EQ(phi.partial_rotary_factor, 0.5f);
  auto smol = parse_model_config(tiny_config_json("smollm3", R"(, "no_rope_layer_interval": 2)"));
  EXPECT_EQ(smol.rope_layers, (std::vector<bool>{true, false}));
  auto granite = parse_model_config(tiny_config_json("granite", R"(, "embedding_multiplier": 12.0,
      "residual_multiplier": 0.22, "attention_multiplier": 0.0078125, "logits_scaling": 8.0)"));
  EXPECT_FLOAT_EQ(granite.embedding_multiplier, 12.0f);
  EXPECT_FLOAT_EQ(*granite.attention_multiplier, 0.0078125f);
  // Refusals name the field.
  auto err = [](const std::string& mt, const std::string& extra) {
    return error_of([&] { parse_model_config(tiny_config_json(mt, extra)); });
  };
  EXPECT_NE(err("phi3", R"(, "rope_scaling": {"type": "longrope", "short_factor": [1], "long_factor": [1]})")
                .find("short_factor and long_factor must each hold"),
            std::string::npos);
  EXPECT_NE(err("phi3", R"(, "partial_rotary_factor": 1.5)").find("partial_rotary_factor"), std::string::npos);
  EXPECT_NE(err("smollm3", R"(, "no_rope_layers": [1])").find("no_rope_layers"), std::string::npos);
  EXPECT_NE(err("gemma2", R"(, "final_logit_softcapping": -1)").find("final_logit_softcapping"), std::string::npos);
  EXPECT_NE(
      err("gemma3_text", R"(, "rope_parameters": {"full_attention": {"rope_theta": 10000.0}, "chunked_attention": {}})")
          .find("unknown layer type"),
      std::string::npos);
  EXPECT_NE(err("gemma3_text", R"(, "use_bidirectional_attention": true)").find("use_bidirectional_attention"),
            std::string::npos);
}

// gemma4_text (Gemma4TextConfig, transformers 5.24): per-layer head widths, the class's layer pattern and
// proportional rope (these configs set no per-layer inputs: "hidden_size_per_layer_input": 0).
TEST(Config, Gemma4TextPerLayerWidths) {
  auto g4 = [](const std::string& extra) {
    return parse_model_config(tiny_config_json("gemma4_text", R"(, "hidden_size_per_layer_input": 0)" + extra));
  };
  const std::string three = R"(, "num_hidden_layers": 3, "head_dim": 8, "sliding_window": 4,
      "layer_types": ["sliding_attention", "sliding_attention", "full_attention"])";
  // per_layer_config: the listed layer's width and key/value heads; the others keep the common fields.
  auto a = g4(three + R"(, "per_layer_config": {"2": {"head_dim": 32, "num_key_value_heads": 1}})");
  EXPECT_EQ(a.sliding_layers, (std::vector<bool>{true, true, false}));
  EXPECT_EQ(layer_head_dim(a, 2), 32);
  EXPECT_EQ(layer_kv_heads(a, 2), 1);
  EXPECT_EQ(layer_head_dim(a, 0), a.head_dim);
  EXPECT_EQ(layer_kv_heads(a, 0), a.num_key_value_heads);
  // Without it: full layers are global_head_dim wide; num_global_key_value_heads only with attention_k_eq_v.
  auto b = g4(three + R"(, "global_head_dim": 48, "num_global_key_value_heads": 1, "attention_k_eq_v": true)");
  EXPECT_TRUE(b.attention_k_eq_v);
  EXPECT_EQ(layer_head_dim(b, 2), 48);
  EXPECT_EQ(layer_kv_heads(b, 2), 1);
  EXPECT_EQ(layer_head_dim(b, 1), b.head_dim);
  EXPECT_EQ(layer_kv_heads(b, 1), b.num_key_value_heads);
  auto b2 = g4(three + R"(, "global_head_dim": 48, "num_global_key_value_heads": 1, "attention_k_eq_v": false)");
  EXPECT_FALSE(b2.attention_k_eq_v);
  EXPECT_EQ(layer_head_dim(b2, 2), 48);
  EXPECT_EQ(layer_kv_heads(b2, 2), b2.num_key_value_heads);
  EXPECT_EQ(b2.num_key_value_heads, 2);
  // No layer_types: five sliding layers to one full one, the last layer forced full.
  auto c = g4(R"(, "num_hidden_layers": 8, "head_dim": 8, "sliding_window": 4)");
  EXPECT_EQ(c.sliding_layers, (std::vector<bool>{true, true, true, true, true, false, true, false}));
  // layer_types' last entry is made full whatever it says.
  auto last = g4(R"(, "head_dim": 8, "sliding_window": 4, "layer_types": ["sliding_attention", "sliding_attention"])");
  EXPECT_EQ(last.sliding_layers, (std::vector<bool>{true, false}));
  // Proportional rope on the full-attention layers.
  auto d = g4(three + R"(, "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
      "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1000000.0}})");
  ASSERT_TRUE(d.rope_scaling.has_value());
  EXPECT_EQ(d.rope_scaling->rope_type, "proportional");
  EXPECT_FLOAT_EQ(d.rope_scaling->partial_rotary_factor, 0.25f);
  EXPECT_FLOAT_EQ(d.rope_theta, 1e6f);
  EXPECT_FLOAT_EQ(d.sliding_rope_theta.value_or(0), 1e4f);
  // The experts beside the MLP.
  auto moe = g4(three + R"(, "enable_moe_block": true, "num_experts": 4, "top_k_experts": 2,
      "moe_intermediate_size": 32)");
  EXPECT_EQ(moe.num_experts, 4);
  EXPECT_EQ(moe.num_experts_per_tok, 2);
  EXPECT_EQ(moe.moe_intermediate_size, 32);
  // Gemma 4 multimodal checkpoints run their language model.
  auto mm = parse_model_config(R"({"model_type": "gemma4", "vision_config": {},
      "text_config": {"model_type": "gemma4_text", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
                      "num_hidden_layers": 2, "head_dim": 8, "sliding_window": 4,
                      "hidden_size_per_layer_input": 0}})");
  EXPECT_EQ(mm.model_type, "gemma4_text");
  EXPECT_EQ(mm.multimodal_model_type, "gemma4");
}

TEST(Config, Gemma4TextPerLayerInputsSharingAndRefusals) {
  auto err = [](const std::string& extra) {
    return error_of([&] { parse_model_config(tiny_config_json("gemma4_text", extra)); });
  };
  // Per-layer inputs (Gemma 4 E2B / E4B): the class default 256 features from 262144 rows, or the config's.
  auto c = parse_model_config(tiny_config_json("gemma4_text"));
  EXPECT_EQ(c.per_layer_input_size, 256);
  EXPECT_EQ(c.per_layer_input_vocab, 262144);
  c = parse_model_config(tiny_config_json(
      "gemma4_text", R"(, "hidden_size_per_layer_input": 8, "vocab_size_per_layer_input": 64, "num_hidden_layers": 3,
      "layer_types": ["sliding_attention", "full_attention", "sliding_attention"], "num_kv_shared_layers": 1,
      "use_double_wide_mlp": true)"));
  EXPECT_EQ(c.per_layer_input_size, 8);
  EXPECT_EQ(c.num_kv_shared_layers, 1);
  EXPECT_TRUE(c.double_wide_mlp);
  EXPECT_EQ(err(R"(, "vocab_size_per_layer_input": 32)"),
            "[config] vocab_size_per_layer_input (32) smaller than vocab_size is not supported");
  // Two layers: [sliding, full]; sharing the last needs an earlier full layer, and some layer must compute its own.
  EXPECT_EQ(err(R"(, "num_kv_shared_layers": 1)"),
            "[config] layer 1 shares keys and values with no earlier layer of its type");
  EXPECT_EQ(err(R"(, "num_kv_shared_layers": 2)"),
            "[config] num_kv_shared_layers must be smaller than num_hidden_layers");
  EXPECT_NE(err(R"(, "use_bidirectional_attention": "all")").find("not supported"), std::string::npos);
  EXPECT_NE(err(R"(, "enable_moe_block": true)").find("num_experts is required with enable_moe_block"),
            std::string::npos);
  // "vision": bidirectional among image tokens only; the language model alone stays causal.
  EXPECT_NO_THROW(parse_model_config(tiny_config_json("gemma4_text", R"(, "use_bidirectional_attention": "vision")")));
}

TEST(Forward, CachedDecodeMatchesFullForward) {
  auto model = create_model(parse_model_config(tiny_config_json()), tiny_weights(1));
  std::vector<int> ids = {3, 17, 42, 8, 8, 63, 0, 21, 5, 9, 30, 31};
  const int T = static_cast<int>(ids.size());
  auto full_caches = model->make_caches();
  auto full = model->forward(ids_array(ids, 0, T), full_caches);
  // Prefill 5 then one token at a time; and chunks of 3 (a causal mask on a non-empty cache).
  for (int chunk : {1, 3}) {
    auto caches = model->make_caches();
    std::vector<mx::array> parts = {model->forward(ids_array(ids, 0, 5), caches)};
    for (int i = 5; i < T; i += chunk)
      parts.push_back(model->forward(ids_array(ids, i, std::min(T, i + chunk)), caches));
    EXPECT_EQ(caches[0]->offset(), T);
    EXPECT_LT(max_abs_diff(mx::concatenate(parts, 1), full), 1e-5f) << "chunk " << chunk;
  }
  // forward_embeddings is the same path as forward (soft prompts / inputs_embeds).
  auto caches = model->make_caches();
  EXPECT_EQ(max_abs_diff(model->forward_embeddings(model->embed(ids_array(ids, 0, T)), caches), full), 0.0f);
  // Different tokens give different logits (the model is not degenerate).
  auto c2 = model->make_caches();
  EXPECT_GT(max_abs_diff(model->forward(ids_array(ids, 1, T), c2), mx::slice(full, {0, 0, 0}, {1, T - 1, 64})), 1e-2f);
}

TEST(Forward, QuantizedLinearsMatchTheirDequantizedWeights) {
  // mlx-lm layout: weight/scales/biases per linear, bits inferred per tensor (4-bit attention and
  // embeddings, 8-bit MLP here), tied-off head quantized too.
  auto config = parse_model_config(tiny_config_json());
  WeightMap quant, dense;
  for (auto& [k, v] : tiny_weights(2)) {
    if (v.ndim() != 2) {
      quant.emplace(k, v);
      dense.emplace(k, v);
      continue;
    }
    const int bits = k.find(".mlp.") != std::string::npos ? 8 : 4;
    auto q = mx::quantize(v, 32, bits);
    const std::string base = k.substr(0, k.size() - 7);  // strip ".weight"
    quant.emplace(k, q[0]);
    quant.emplace(base + ".scales", q[1]);
    quant.emplace(base + ".biases", q[2]);
    dense.emplace(k, mx::dequantize(q[0], q[1], q[2], 32, bits));
  }
  auto qm = create_model(config, quant);
  auto dm = create_model(config, dense);
  std::vector<int> ids = {1, 2, 3, 60, 61, 62, 7};
  auto qc = qm->make_caches(), dc = dm->make_caches();
  auto ql = qm->forward(ids_array(ids, 0, 7), qc), dl = dm->forward(ids_array(ids, 0, 7), dc);
  EXPECT_LT(max_abs_diff(ql, dl), 1e-4f);
  EXPECT_EQ(qm->parameters().at("model.layers.0.mlp.up_proj.weight").shape(), (mx::Shape{64, 8}));  // 8-bit
  // A packed weight whose shape fits no bit width is rejected by name.
  quant.insert_or_assign("model.layers.1.mlp.up_proj.weight", mx::zeros({64, 7}, mx::uint32));
  EXPECT_NE(error_of([&] { create_model(config, quant); }).find("'model.layers.1.mlp.up_proj.weight'"),
            std::string::npos);
}

TEST(Forward, SlidingWindowPrefillEqualsCachedDecode) {
  // transformers' sliding-window mask: the 12-token prefill and a decode through the cache (whose
  // single queries see more than the window of keys) must agree, and differ from full attention.
  auto slide =
      create_model(parse_model_config(tiny_config_json("mistral", R"(, "sliding_window": 4)")), tiny_weights(5));
  auto full = create_model(parse_model_config(tiny_config_json("mistral")), tiny_weights(5));
  std::vector<int> ids = {9, 8, 7, 6, 5, 4, 3, 2, 11, 12, 13, 14};
  auto c1 = slide->make_caches(), c2 = slide->make_caches(), c3 = full->make_caches();
  auto all = slide->forward(ids_array(ids, 0, 12), c1);
  std::vector<mx::array> steps = {slide->forward(ids_array(ids, 0, 6), c2)};
  for (int i = 6; i < 12; ++i) steps.push_back(slide->forward(ids_array(ids, i, i + 1), c2));
  EXPECT_LT(max_abs_diff(all, mx::concatenate(steps, 1)), 1e-4f);
  auto ref = full->forward(ids_array(ids, 0, 12), c3);
  auto head = [](const mx::array& a, int n) { return mx::slice(a, {0, 0, 0}, {1, n, a.shape(2)}); };
  EXPECT_LT(max_abs_diff(head(all, 4), head(ref, 4)), 1e-5f);  // inside the window: plain causal
  EXPECT_GT(max_abs_diff(all, ref), 1e-3f);
}

TEST(Config, SlidingLayers) {
  auto m = parse_model_config(tiny_config_json("mistral", R"(, "sliding_window": 8)"));
  EXPECT_EQ(m.sliding_layers, std::vector<bool>(m.num_hidden_layers, true));
  // Qwen2Config: use_sliding_window defaults to false; layers >= max_window_layers slide.
  EXPECT_TRUE(parse_model_config(tiny_config_json("qwen2", R"(, "sliding_window": 8)")).sliding_layers.empty());
  auto q = parse_model_config(
      tiny_config_json("qwen2", R"(, "sliding_window": 8, "use_sliding_window": true, "max_window_layers": 1)"));
  ASSERT_EQ(q.sliding_layers.size(), static_cast<size_t>(q.num_hidden_layers));
  EXPECT_FALSE(q.sliding_layers[0]);
  EXPECT_TRUE(q.sliding_layers.back());
  EXPECT_TRUE(parse_model_config(tiny_config_json("llama", R"(, "sliding_window": 8)")).sliding_layers.empty());
}

TEST(Forward, ForwardLastEqualsTheTailOfForward) {
  auto model = create_model(parse_model_config(tiny_config_json()), tiny_weights(3));
  std::vector<int> ids = {9, 8, 7, 6, 5, 4};
  auto c1 = model->make_caches(), c2 = model->make_caches();
  auto full = model->forward(ids_array(ids, 0, 6), c1);
  auto last2 = model->forward_last(ids_array(ids, 0, 6), c2, 2);
  EXPECT_EQ(last2.shape(), (mx::Shape{1, 2, 64}));
  EXPECT_LT(max_abs_diff(last2, mx::slice(full, {0, 4, 0}, {1, 6, 64})), 1e-6f);
  EXPECT_EQ(c2[0]->offset(), 6);  // the cache still holds every position
  auto c3 = model->make_caches();
  EXPECT_NE(error_of([&] { model->forward_last(ids_array(ids, 0, 6), c3, 7); }).find("[model]"), std::string::npos);
}

// "quantization" as mlx-lm's load_model reads it: the top level's mode with its defaults, and per-module
// entries passed to to_quantized as they stand (what they leave out is to_quantized's default: affine, its
// mode's group size and bits; not the top level's).
TEST(Config, MultimodalCheckpointsReadTheirLanguageModel) {
  // Gemma 3 4B's config.json shape: text_config lists sizes only; Gemma3TextConfig gives the rest.
  auto g = parse_model_config(R"({"model_type": "gemma3", "eos_token_id": [1, 106], "vision_config": {},
      "text_config": {"model_type": "gemma3_text", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
                      "num_hidden_layers": 6, "final_logit_softcapping": 30.0}})");
  EXPECT_EQ(g.model_type, "gemma3_text");
  EXPECT_EQ(g.multimodal_model_type, "gemma3");
  EXPECT_EQ(g.num_attention_heads, 8);
  EXPECT_EQ(g.num_key_value_heads, 4);
  EXPECT_EQ(g.head_dim, 256);
  EXPECT_TRUE(g.tie_word_embeddings);
  EXPECT_EQ(g.eos_token_id, (std::vector<int>{1, 106}));  // the outer ids first
  EXPECT_FALSE(g.final_logit_softcapping.has_value());    // Gemma3ForConditionalGeneration never caps
  EXPECT_EQ(std::count(g.sliding_layers.begin(), g.sliding_layers.end(), false), 1);
  // Mistral 3 with Ministral 3 text: the outer quantization, no outer tie (its default: tied), the query scale.
  auto m = parse_model_config(R"({"model_type": "mistral3", "quantization": {"group_size": 32, "bits": 4},
      "text_config": {"model_type": "ministral3", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
                      "num_hidden_layers": 2, "num_attention_heads": 4, "rope_parameters": {"rope_type": "yarn",
                      "factor": 16.0, "original_max_position_embeddings": 16384, "llama_4_scaling_beta": 0.1}}})");
  EXPECT_EQ(m.model_type, "ministral3");
  EXPECT_EQ(m.multimodal_model_type, "mistral3");
  ASSERT_TRUE(m.quantization.has_value());
  EXPECT_EQ(m.quantization->group_size, 32);
  EXPECT_TRUE(m.tie_word_embeddings);
  EXPECT_FLOAT_EQ(m.llama4_scaling_beta.value_or(0), 0.1f);
  EXPECT_EQ(m.llama4_scaling_positions, 16384);
  EXPECT_EQ(m.head_dim, 128);  // Ministral3Config's default
  // Without rope_parameters: Ministral3Config's YaRN and beta.
  auto d = parse_model_config(tiny_config_json("ministral3"));
  ASSERT_TRUE(d.rope_scaling.has_value());
  EXPECT_EQ(d.rope_scaling->rope_type, "yarn");
  EXPECT_EQ(d.llama4_scaling_positions, 16384);
  EXPECT_EQ(error_of([] { parse_model_config(R"({"model_type": "mistral3"})"); }),
            "[config] mistral3 config.json needs a text_config object (its language model's config)");
  EXPECT_EQ(error_of([] {
              parse_model_config(tiny_config_json("ministral3", R"(, "rope_parameters": {"rope_type": "yarn",
                  "factor": 4.0, "original_max_position_embeddings": 8})"));
            }),
            "[config] ministral3 needs rope_parameters.llama_4_scaling_beta (a number: its attention scales queries by "
            "it)");
}

TEST(Config, Olmo3WindowsAndRopePerLayerType) {
  // Olmo3Config: every 4th layer global, a 4096 window; the older top-level rope_scaling scales the global
  // layers only, the sliding ones rotate with rope_theta unscaled.
  auto c = parse_model_config(tiny_config_json(
      "olmo3",
      R"(, "num_hidden_layers": 4, "rope_theta": 5e5, "rope_scaling": {"rope_type": "linear", "factor": 2.0})"));
  EXPECT_EQ(c.sliding_layers, (std::vector<bool>{true, true, true, false}));
  EXPECT_EQ(c.sliding_window.value_or(0), 4096);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->rope_type, "linear");
  EXPECT_FLOAT_EQ(c.sliding_rope_theta.value_or(0), 5e5f);
  EXPECT_FALSE(c.sliding_rope_scaling.has_value());
}

TEST(Config, GlmAndOlmoeClassDefaults) {
  // Glm4Config: head_dim 128, RoPE on half of it, attention_bias on q / k / v only, eps 1.5625e-7 (a config that
  // leaves them out gets these, as transformers' class does).
  auto g = parse_model_config(R"({"model_type": "glm4", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4})");
  EXPECT_EQ(g.head_dim, 128);
  EXPECT_FLOAT_EQ(g.partial_rotary_factor, 0.5f);
  EXPECT_TRUE(g.qkv_bias.value_or(false));
  EXPECT_FALSE(g.attention_bias);
  EXPECT_FLOAT_EQ(g.rms_norm_eps, 1.5625e-7f);
  auto unbiased =
      parse_model_config(tiny_config_json("glm", R"(, "attention_bias": false, "partial_rotary_factor": 1.0)"));
  EXPECT_FALSE(unbiased.qkv_bias.value_or(true));
  EXPECT_FLOAT_EQ(unbiased.partial_rotary_factor, 1.0f);
  // OlmoeConfig: 64 experts, top-8 unnormalised, experts as wide as intermediate_size, every layer sparse.
  auto o = parse_model_config(tiny_config_json("olmoe", R"(, "decoder_sparse_step": 2, "mlp_only_layers": [0])"));
  EXPECT_EQ(o.num_experts, 64);
  EXPECT_EQ(o.num_experts_per_tok, 8);
  EXPECT_EQ(o.moe_intermediate_size, 64);
  EXPECT_FALSE(o.norm_topk_prob);
  EXPECT_EQ(o.decoder_sparse_step, 1);
  EXPECT_TRUE(o.mlp_only_layers.empty());
  EXPECT_DOUBLE_EQ(o.router_aux_loss_coef, 0.01);
  EXPECT_EQ(parse_model_config(tiny_config_json("olmoe", R"(, "clip_qkv": 8.0)")).clip_qkv, 8.0f);
  EXPECT_FALSE(o.clip_qkv);
}

TEST(Config, OlmoWeightlessNormsAndClipQkv) {
  // OlmoConfig: OlmoLayerNorm's fixed 1e-5 (no config field), an untied head, clip_qkv where set.
  auto c = parse_model_config(tiny_config_json("olmo", R"(, "clip_qkv": 8.0, "rms_norm_eps": 0.5)"));
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.clip_qkv, 8.0f);
  EXPECT_FALSE(parse_model_config(tiny_config_json("olmo")).clip_qkv);
  EXPECT_EQ(error_of([] { parse_model_config(tiny_config_json("llama", R"(, "clip_qkv": 8.0)")); }),
            "[config] clip_qkv is not supported for llama (only olmo and olmoe)");
  EXPECT_EQ(error_of([] { parse_model_config(tiny_config_json("olmo", R"(, "clip_qkv": "8")")); }),
            "[config] field 'clip_qkv' must be a number");
  for (const char* bad : {R"(, "clip_qkv": 0)", R"(, "clip_qkv": -2.5)"})
    EXPECT_EQ(error_of([&] { parse_model_config(tiny_config_json("olmo", bad)); }),
              "[config] clip_qkv must be a finite number > 0")
        << bad;
}

TEST(Config, Glm4MoeRoutingFieldsAndDefaults) {
  // Glm4MoeConfig: 128 routed experts top-8 of width 1408, one shared expert, the first layer dense, sigmoid
  // routing with one group, renormalised; RoPE on half of each head; attention_bias (false) on q / k / v only.
  auto c = parse_model_config(tiny_config_json("glm4_moe", R"(, "num_hidden_layers": 3, "first_k_dense_replace": 2)"));
  EXPECT_EQ(c.num_experts, 128);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.moe_intermediate_size, 1408);
  EXPECT_EQ(c.shared_expert_intermediate_size, 1408);
  EXPECT_EQ(c.mlp_only_layers, (std::vector<int>{0, 1}));
  EXPECT_TRUE(c.sigmoid_routing);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.n_group, 1);
  EXPECT_FLOAT_EQ(c.routed_scaling_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.partial_rotary_factor, 0.5f);
  EXPECT_FALSE(c.qkv_bias.value_or(true));
  EXPECT_FALSE(c.use_qk_norm);
  auto r = parse_model_config(tiny_config_json("glm4_moe", R"(, "n_routed_experts": 8, "num_experts_per_tok": 2,
      "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5, "n_shared_experts": 2, "moe_intermediate_size": 16,
      "use_qk_norm": true, "output_router_logits": true)"));
  EXPECT_EQ(r.n_group, 4);
  EXPECT_EQ(r.topk_group, 2);
  EXPECT_FLOAT_EQ(r.routed_scaling_factor, 2.5f);
  EXPECT_EQ(r.shared_expert_intermediate_size, 32);
  EXPECT_TRUE(r.use_qk_norm);
  EXPECT_FALSE(r.output_router_logits);  // Glm4MoeForCausalLM adds no balancing loss
  auto error = [](const char* extra) {
    return error_of([&] {
      parse_model_config(tiny_config_json("glm4_moe", std::string(R"(, "n_routed_experts": 8,
        "num_experts_per_tok": 2)") + extra));
    });
  };
  EXPECT_EQ(error(R"(, "n_group": 3)"), "[config] n_group must be >= 1 and divide the 8 routed experts");
  EXPECT_EQ(error(R"(, "n_group": 2, "topk_group": 3)"), "[config] topk_group must be in [1, n_group]");
  EXPECT_EQ(error(R"(, "n_group": 8)"),
            "[config] n_group leaves fewer than 2 experts a group (groups are scored by their two best)");
  EXPECT_EQ(error(R"(, "num_experts_per_tok": 4, "n_group": 4, "topk_group": 1)"),
            "[config] topk_group groups hold fewer experts than num_experts_per_tok");
  EXPECT_EQ(error(R"(, "routed_scaling_factor": 0)"), "[config] routed_scaling_factor must be a finite number > 0");
}

TEST(Config, CohereLayerNormsLogitScaleAndRopeOnSlidingLayers) {
  // CohereConfig: layer_norm_eps (not rms_norm_eps), logits x 0.0625, use_qk_norm; Cohere2Config: head_dim is
  // hidden / heads whatever the file says, every 4th layer global and without RoPE.
  auto c = parse_model_config(tiny_config_json("cohere", R"(, "layer_norm_eps": 1e-3, "use_qk_norm": true)"));
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-3f);
  EXPECT_FLOAT_EQ(c.logit_scale.value_or(0), 0.0625f);
  EXPECT_TRUE(c.use_qk_norm);
  EXPECT_TRUE(c.rope_layers.empty());
  auto c2 = parse_model_config(tiny_config_json("cohere2", R"(, "num_hidden_layers": 4, "head_dim": 64)"));
  EXPECT_EQ(c2.head_dim, 8);
  EXPECT_FALSE(c2.use_qk_norm);
  EXPECT_EQ(c2.sliding_window.value_or(0), 4096);
  EXPECT_EQ(c2.sliding_layers, (std::vector<bool>{true, true, true, false}));
  EXPECT_EQ(c2.rope_layers, (std::vector<bool>{true, true, true, false}));
  auto unwindowed = parse_model_config(tiny_config_json("cohere2", R"(, "sliding_window": null)"));
  EXPECT_EQ(unwindowed.rope_layers, (std::vector<bool>{false, false}));  // no window: no RoPE anywhere either
  EXPECT_EQ(error_of([] { parse_model_config(tiny_config_json("cohere", R"(, "logit_scale": -1.0)")); }),
            "[config] field 'logit_scale' must be a finite number > 0, got -1");
}

TEST(Config, PhiBiasesPartialRotaryAndRefusedQkLayernorm) {
  // PhiConfig: biases everywhere, RoPE on half of each head, gelu_new, layer_norm_eps.
  auto c = parse_model_config(R"({"model_type": "phi", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "layer_norm_eps": 1e-4})");
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.mlp_bias);
  EXPECT_FLOAT_EQ(c.partial_rotary_factor, 0.5f);
  EXPECT_EQ(c.hidden_act, "gelu_new");
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-4f);
  EXPECT_EQ(error_of([] { parse_model_config(tiny_config_json("phi", R"(, "qk_layernorm": true)")); }),
            "[config] qk_layernorm is not supported (phi's LayerNorms over each head's q and k)");
}

TEST(Config, StableLmSeedOssErnieAndExaone4Fields) {
  // StableLmConfig: layer_norm_eps, a quarter of each head rotates, use_qkv_bias on q / k / v only, qk_layernorm,
  // use_parallel_residual.
  auto s = parse_model_config(tiny_config_json(
      "stablelm", R"(, "layer_norm_eps": 1e-4, "use_qkv_bias": true, "qk_layernorm": true, "attention_bias": true,
      "use_parallel_residual": true)"));
  EXPECT_FLOAT_EQ(s.rms_norm_eps, 1e-4f);
  EXPECT_FLOAT_EQ(s.partial_rotary_factor, 0.25f);
  EXPECT_TRUE(s.qkv_bias.value_or(false));
  EXPECT_FALSE(s.attention_bias);
  EXPECT_TRUE(s.use_qk_norm);
  EXPECT_TRUE(s.parallel_residual);
  // SeedOssConfig: attention_bias (default on) on q / k / v, attention_out_bias on o_proj, head_dim 128.
  auto seed = parse_model_config(tiny_config_json("seed_oss", R"(, "attention_out_bias": true)"));
  EXPECT_TRUE(seed.qkv_bias.value_or(false));
  EXPECT_TRUE(seed.attention_bias);
  EXPECT_EQ(seed.head_dim, 128);
  auto seed_no_qkv = parse_model_config(tiny_config_json("seed_oss", R"(, "attention_bias": false)"));
  EXPECT_FALSE(seed_no_qkv.qkv_bias.value_or(true));
  EXPECT_FALSE(seed_no_qkv.attention_bias);
  // Ernie4_5Config: use_bias on every linear, rope_theta 500000 and a tied head when absent.
  auto e = parse_model_config(R"({"model_type": "ernie4_5", "vocab_size": 64, "hidden_size": 32,
      "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "use_bias": true})");
  EXPECT_TRUE(e.attention_bias && e.mlp_bias);
  EXPECT_FLOAT_EQ(e.rope_theta, 500000.0f);
  EXPECT_TRUE(e.tie_word_embeddings);
  // Exaone4Config: every 4th layer global and without RoPE (window 4096 when absent); EXAONE's own letters; no
  // window: RoPE everywhere.
  auto x = parse_model_config(tiny_config_json("exaone4", R"(, "num_hidden_layers": 4)"));
  EXPECT_EQ(x.sliding_window.value_or(0), 4096);
  EXPECT_EQ(x.sliding_layers, (std::vector<bool>{true, true, true, false}));
  EXPECT_EQ(x.rope_layers, (std::vector<bool>{true, true, true, false}));
  auto letters = parse_model_config(tiny_config_json("exaone4", R"(, "num_hidden_layers": 3, "sliding_window": 8,
      "sliding_window_pattern": "LG")"));
  EXPECT_EQ(letters.sliding_layers, (std::vector<bool>{true, false, true}));
  auto unwindowed = parse_model_config(tiny_config_json("exaone4", R"(, "sliding_window": null)"));
  EXPECT_TRUE(unwindowed.sliding_layers.empty());
  EXPECT_TRUE(unwindowed.rope_layers.empty());
  EXPECT_EQ(error_of([] { parse_model_config(tiny_config_json("exaone4", R"(, "sliding_window_pattern": "LXG")")); }),
            "[config] sliding_window_pattern must be an integer or letters L (local) and G (global), got 'LXG'");
}

TEST(Config, GptNeoxOlderRopeKeysAndBiases) {
  // GPTNeoXConfig: rotary_pct / rotary_emb_base (older configs), parallel blocks and biases by default, exact gelu.
  auto c = parse_model_config(R"({"model_type": "gpt_neox", "vocab_size": 64, "hidden_size": 32,
      "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "rotary_pct": 0.5,
      "rotary_emb_base": 20000, "layer_norm_eps": 1e-4})");
  EXPECT_FLOAT_EQ(c.partial_rotary_factor, 0.5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 20000.0f);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-4f);
  EXPECT_TRUE(c.parallel_residual && c.attention_bias && c.mlp_bias);
  EXPECT_EQ(c.hidden_act, "gelu");
  EXPECT_EQ(c.num_key_value_heads, 4);
  auto sequential = parse_model_config(tiny_config_json("gpt_neox", R"(, "use_parallel_residual": false)"));
  EXPECT_FALSE(sequential.parallel_residual);
  EXPECT_FLOAT_EQ(sequential.partial_rotary_factor, 0.25f);
}

TEST(Config, ArceeAndNemotronRelu2AndNemotronNorms) {
  // ArceeConfig / NemotronConfig: relu2 by default; NemotronConfig: norm_eps, RoPE on half of each head.
  auto a = parse_model_config(tiny_config_json("arcee"));
  EXPECT_EQ(a.hidden_act, "relu2");
  EXPECT_FLOAT_EQ(a.partial_rotary_factor, 1.0f);
  auto n = parse_model_config(tiny_config_json("nemotron", R"(, "norm_eps": 1e-3)"));
  EXPECT_EQ(n.hidden_act, "relu2");
  EXPECT_FLOAT_EQ(n.rms_norm_eps, 1e-3f);
  EXPECT_FLOAT_EQ(n.partial_rotary_factor, 0.5f);
  ModelConfig bad = parse_model_config(tiny_config_json("arcee", R"(, "hidden_act": "relu6")"));
  EXPECT_EQ(
      error_of([&] { create_model(bad, tiny_weights()); }),
      "[model] unsupported hidden_act 'relu6' (supported: silu, gelu, gelu_pytorch_tanh, gelu_new, gelu_fast, relu2, "
      "xielu)");
}

TEST(Config, GraniteMoeExpertsAndMultipliers) {
  // GraniteMoeConfig: 8 experts top-2 as wide as intermediate_size, the top-k renormalised (a softmax over the top-k
  // logits), every layer sparse whatever decoder_sparse_step / mlp_only_layers say, granite's multipliers.
  auto c = parse_model_config(tiny_config_json("granitemoe", R"(, "residual_multiplier": 0.5, "decoder_sparse_step": 2,
      "mlp_only_layers": [0])"));
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_EQ(c.moe_intermediate_size, c.intermediate_size);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.decoder_sparse_step, 1);
  EXPECT_TRUE(c.mlp_only_layers.empty());
  EXPECT_FLOAT_EQ(c.residual_multiplier, 0.5f);
  EXPECT_FLOAT_EQ(c.attention_multiplier.value_or(0), 1.0f);
}

TEST(Models, GraniteMoeExpertsSplitAndJoin) {
  // input_linear [E, 2I, H] <-> switch_mlp.gate_proj / up_proj [E, I, H]; output_linear <-> switch_mlp.down_proj.
  WeightMap w{{"model.layers.0.block_sparse_moe.input_linear.weight", mx::reshape(mx::arange(24.0f), {2, 4, 3})},
              {"model.layers.0.block_sparse_moe.output_linear.weight", mx::zeros({2, 3, 2})},
              {"model.layers.0.block_sparse_moe.router.layer.weight", mx::zeros({2, 3})}};
  auto m = to_model_names("granitemoe", w);
  ASSERT_EQ(m.count("model.layers.0.block_sparse_moe.switch_mlp.up_proj.weight"), 1u);
  const auto& up = m.at("model.layers.0.block_sparse_moe.switch_mlp.up_proj.weight");
  EXPECT_EQ(up.shape(), (mx::Shape{2, 2, 3}));
  EXPECT_EQ(mx::take(mx::reshape(up, {-1}), 0, 0).item<float>(), 6.0f);  // expert 0's third row
  EXPECT_EQ(m.count("model.layers.0.block_sparse_moe.switch_mlp.down_proj.weight"), 1u);
  EXPECT_EQ(m.count("model.layers.0.block_sparse_moe.router.layer.weight"), 1u);
  auto hf = to_checkpoint_names("granitemoe", m, CheckpointLayout::Hf);
  EXPECT_EQ(hf.size(), 3u);
  EXPECT_TRUE(mx::array_equal(hf.at("model.layers.0.block_sparse_moe.input_linear.weight"),
                              w.at("model.layers.0.block_sparse_moe.input_linear.weight"))
                  .item<bool>());
  EXPECT_EQ(to_checkpoint_names("granitemoe", m, CheckpointLayout::MlxLm).size(), 4u);  // mlx-lm's own names
}

TEST(Config, QwenVlLanguageModels) {
  // Qwen2-VL / 2.5-VL / 3-VL: qwen2 / qwen3 decoders; the original uploads' flat fields and "mrope" read as plain
  // RoPE (text positions are equal in every section); a foreign text_config named.
  auto flat = parse_model_config(R"({"model_type": "qwen2_5_vl", "vocab_size": 64, "hidden_size": 32,
      "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
      "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
      "tie_word_embeddings": false, "vision_config": {"depth": 1}})");
  EXPECT_EQ(flat.model_type, "qwen2");
  EXPECT_EQ(flat.multimodal_model_type, "qwen2_5_vl");
  EXPECT_FALSE(flat.rope_scaling.has_value());
  EXPECT_FLOAT_EQ(flat.rope_theta, 1000000.0f);
  EXPECT_FALSE(flat.tie_word_embeddings);
  auto q3 = parse_model_config(R"({"model_type": "qwen3_vl", "text_config": {"model_type": "qwen3_vl_text",
      "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
      "head_dim": 16, "rope_parameters": {"rope_type": "default", "rope_theta": 5e5, "mrope_section": [2, 3, 3],
      "mrope_interleaved": true}}})");
  EXPECT_EQ(q3.model_type, "qwen3");
  EXPECT_TRUE(q3.tie_word_embeddings);  // the outer config's default
  EXPECT_EQ(
      error_of([] { parse_model_config(R"({"model_type": "qwen3_vl", "text_config": {"model_type": "qwen2"}})"); }),
      "[config] qwen3_vl's text_config has model_type \"qwen2\" (supported: qwen3_vl_text)");
  WeightMap w{{"model.embed_tokens.weight", mx::zeros({2})}, {"lm_head.weight", mx::zeros({2})}};
  EXPECT_TRUE(to_checkpoint_names(q3, w, CheckpointLayout::Hf).count("model.language_model.embed_tokens.weight"));
  EXPECT_TRUE(to_checkpoint_names(flat, w, CheckpointLayout::Hf).count("model.embed_tokens.weight"));
  EXPECT_TRUE(to_checkpoint_names(flat, w, CheckpointLayout::MlxLm).count("language_model.model.embed_tokens.weight"));
  EXPECT_EQ(to_model_names(flat, WeightMap{{"visual.blocks.0.attn.qkv.weight", mx::zeros({2})},
                                           {"model.visual.merger.mlp.0.weight", mx::zeros({2})}})
                .size(),
            0u);
}

TEST(Config, Llama4TextLayersAndExperts) {
  // Llama4TextConfig's defaults: every 4th layer without RoPE, chunks of 8192 on the others, the query temperature
  // (0.1, 8192) on the NoPE layers, 16 experts top-1 in every layer as wide as intermediate_size beside the shared
  // expert, the dense MLP intermediate_size_mlp wide.
  auto c = parse_model_config(R"({"model_type": "llama4_text", "vocab_size": 64, "hidden_size": 32,
      "intermediate_size": 16, "num_hidden_layers": 8, "num_attention_heads": 4})");
  EXPECT_EQ(c.rope_layers, (std::vector<bool>{true, true, true, false, true, true, true, false}));
  EXPECT_EQ(c.chunked_layers, c.rope_layers);
  EXPECT_EQ(c.attention_chunk_size, 8192);
  EXPECT_TRUE(c.use_qk_norm);
  EXPECT_TRUE(c.llama4_scaling_nope);
  EXPECT_FLOAT_EQ(*c.llama4_scaling_beta, 0.1f);
  EXPECT_EQ(c.llama4_scaling_positions, 8192);
  EXPECT_EQ(c.num_experts, 16);
  EXPECT_EQ(c.num_experts_per_tok, 1);
  EXPECT_EQ(c.moe_intermediate_size, 16);
  EXPECT_EQ(c.shared_expert_intermediate_size, 16);
  EXPECT_EQ(c.intermediate_size, 16384);
  EXPECT_TRUE(c.llama4_routing);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.head_dim, 128);
  // Maverick's layout: moe_layers, NoPE layers listed (a longer list is allowed), no chunking, no temperature.
  auto m = parse_model_config(R"({"model_type": "llama4_text", "vocab_size": 64, "hidden_size": 32,
      "intermediate_size": 16, "intermediate_size_mlp": 48, "num_hidden_layers": 4, "num_attention_heads": 4,
      "head_dim": 8, "moe_layers": [1, 3], "no_rope_layers": [1, 0, 1, 1, 0], "attention_chunk_size": null,
      "attn_temperature_tuning": false, "use_qk_norm": false})");
  EXPECT_EQ(m.rope_layers, (std::vector<bool>{true, false, true, true}));
  EXPECT_TRUE(m.chunked_layers.empty());
  EXPECT_FALSE(m.attention_chunk_size.has_value());
  EXPECT_FALSE(m.llama4_scaling_beta.has_value());
  EXPECT_FALSE(m.use_qk_norm);
  EXPECT_EQ(m.mlp_only_layers, (std::vector<int>{0, 2}));
  EXPECT_EQ(m.intermediate_size, 48);
  for (auto [extra, message] : std::initializer_list<std::pair<const char*, const char*>>{
           {R"(, "no_rope_layers": [1])", "[config] no_rope_layers must list at least one entry per layer"},
           {R"(, "no_rope_layers": [1, 2])", "[config] no_rope_layers entries must be 0 or 1"},
           {R"(, "layer_types": ["chunked_attention", "sliding_attention"])",
            "[config] unsupported layer type \"sliding_attention\" (supported: full_attention, chunked_attention)"},
           {R"(, "attention_chunk_size": null, "layer_types": ["chunked_attention", "full_attention"])",
            "[config] chunked_attention layers need an attention_chunk_size"},
           {R"(, "attention_chunk_size": 0)", "[config] attention_chunk_size must be at least 1"},
           {R"(, "num_experts_per_tok": 17)", "[config] num_experts_per_tok must be in [1, num_experts]"},
           {R"(, "attn_temperature_tuning": "yes")", "[config] attn_temperature_tuning must be true or false"}})
    EXPECT_EQ(error_of([&] { parse_model_config(tiny_config_json("llama4_text", extra)); }), message) << extra;
}

TEST(Config, PhimoeRoutingRopeAndRefusals) {
  // PhimoeConfig: 16 x top-2 as wide as intermediate_size, sparsemixer with router_jitter_noise (0.01), LongRoPE
  // with its short / long multipliers, lm_head_bias, every layer windowed when sliding_window is set.
  auto c = parse_model_config(tiny_config_json("phimoe", R"(, "lm_head_bias": true, "sliding_window": 8,
      "rope_scaling": {"type": "longrope", "short_factor": [1, 2, 3, 4], "long_factor": [2, 3, 4, 5],
        "short_mscale": 1.2, "long_mscale": 1.4, "original_max_position_embeddings": 16})"));
  EXPECT_EQ(c.num_experts, 16);
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_EQ(c.moe_intermediate_size, 64);
  EXPECT_TRUE(c.sparsemixer);
  EXPECT_DOUBLE_EQ(c.router_jitter_noise, 0.01);
  EXPECT_TRUE(c.lm_head_bias);
  EXPECT_EQ(c.sliding_layers, (std::vector<bool>{true, true}));
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_FLOAT_EQ(*c.rope_scaling->short_mscale, 1.2f);
  EXPECT_FLOAT_EQ(*c.rope_scaling->long_mscale, 1.4f);
  // (only phimoe reads the multipliers: transformers' phi3 ignores them)
  auto phi3 = parse_model_config(tiny_config_json("phi3", R"(, "rope_scaling": {"type": "longrope",
      "short_factor": [1, 2, 3, 4], "long_factor": [2, 3, 4, 5], "short_mscale": 1.2, "long_mscale": 1.4})"));
  EXPECT_FALSE(phi3.rope_scaling->short_mscale.has_value());
  auto err = [](const std::string& extra) {
    return error_of([&] { parse_model_config(tiny_config_json("phimoe", extra)); });
  };
  EXPECT_EQ(err(R"(, "num_experts_per_tok": 3)"),
            "[config] phimoe routes exactly 2 experts a token (sparsemixer): num_experts_per_tok must be 2");
  EXPECT_EQ(err(R"(, "router_jitter_noise": -1)"), "[config] router_jitter_noise must be a finite number >= 0");
  EXPECT_EQ(err(R"(, "rope_scaling": {"type": "linear", "factor": 2.0})"),
            "[config] phimoe's rope scaling 'linear' is not supported (only longrope)");
  EXPECT_EQ(err(R"(, "rope_scaling": {"type": "longrope", "short_factor": [1, 2, 3, 4], "long_factor": [2, 3, 4, 5],
      "short_mscale": 1.2})"),
            "[config] phimoe's longrope needs short_mscale and long_mscale (numbers)");
  EXPECT_EQ(err(R"(, "rope_scaling": {"type": "longrope", "short_factor": [1, 2, 3, 4], "long_factor": [2, 3, 4, 5],
      "short_mscale": 0, "long_mscale": 1})"),
            "[config] longrope short_mscale must be finite and > 0");
}

TEST(Config, Ernie45MoeExpertsLayersAndBiases) {
  // Ernie4_5_MoeConfig's names and defaults: moe_num_experts 64 x moe_k 6 of width 1536, 2 shared, layers from
  // moe_layer_start_index 1 to the last (-1) sparse at every moe_layer_interval-th; use_bias on the head too.
  auto c = parse_model_config(tiny_config_json("ernie4_5_moe", R"(, "num_hidden_layers": 4, "use_bias": true,
      "moe_layer_end_index": -1, "moe_layer_interval": 1, "moe_norm_min": 1e-9)"));
  EXPECT_EQ(c.num_experts, 64);
  EXPECT_EQ(c.num_experts_per_tok, 6);
  EXPECT_EQ(c.moe_intermediate_size, 1536);
  EXPECT_EQ(c.shared_expert_intermediate_size, 2 * 1536);
  EXPECT_TRUE(c.softmax_score_bias && c.norm_topk_prob && c.lm_head_bias && c.attention_bias && c.mlp_bias);
  EXPECT_FLOAT_EQ(c.moe_norm_min, 1e-9f);
  EXPECT_EQ(c.mlp_only_layers, (std::vector<int>{0}));
  auto d = parse_model_config(tiny_config_json("ernie4_5_moe", R"(, "num_hidden_layers": 4, "moe_num_experts": 4,
      "moe_k": 2, "moe_layer_start_index": 0, "moe_layer_end_index": 2, "moe_layer_interval": 2)"));
  std::vector<bool> sparse;
  for (int i = 0; i < 4; ++i) sparse.push_back(layers::is_moe_layer(d, i));
  EXPECT_EQ(sparse, (std::vector<bool>{false, true, false, false}));
  EXPECT_FALSE(d.lm_head_bias);
  EXPECT_EQ(error_of([] { parse_model_config(tiny_config_json("ernie4_5_moe", R"(, "moe_gate_act": "sigmoid")")); }),
            "[config] moe_gate_act other than softmax is not supported (transformers' Ernie4_5_Moe routes by softmax)");
  EXPECT_EQ(error_of([] { parse_model_config(tiny_config_json("ernie4_5_moe", R"(, "moe_layer_interval": 0)")); }),
            "[config] moe_layer_interval must be at least 1");
}

TEST(Config, HunyuanMoeExpertsFromPerLayerLists) {
  // HunYuanMoEV1Config: num_experts / moe_topk, one value or one per layer (transformers indexes the list by layer);
  // experts and the shared MLP as wide as intermediate_size, every layer sparse, the top-k renormalised; its
  // "dynamic" RoPE alpha as hunyuan_v1_dense's.
  auto c = parse_model_config(tiny_config_json("hunyuan_v1_moe", R"(, "num_experts": [4, 4], "moe_topk": 2,
      "rope_scaling": {"type": "dynamic", "alpha": 1000.0, "factor": 1.0})"));
  EXPECT_EQ(c.num_experts, 4);
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_EQ(c.moe_intermediate_size, 64);
  EXPECT_EQ(c.shared_expert_intermediate_size, 64);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_FALSE(c.rope_scaling.has_value());
  EXPECT_GT(c.rope_theta, 10000.0f);
  EXPECT_TRUE(layers::is_moe_layer(c, 0) && layers::is_moe_layer(c, 1));
  EXPECT_EQ(error_of([] {
              parse_model_config(tiny_config_json("hunyuan_v1_moe", R"(, "num_experts": 4, "moe_topk": [2, 1])"));
            }),
            "[config] field 'moe_topk' differs between layers, which mlxgp does not support");
}

TEST(Config, ApertusDefaultRopeAndRefusedSwitches) {
  // ApertusConfig without rope fields: Llama-3 x8 over 8192 positions, base 12e6. The original configs' qk_norm /
  // post_norm / mlp_bias switches, which transformers never reads, are accepted at their released values only.
  auto a = parse_model_config(R"({"model_type": "apertus", "vocab_size": 64, "hidden_size": 32,
      "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "qk_norm": true, "post_norm": false})");
  EXPECT_FLOAT_EQ(a.rope_theta, 12000000.0f);
  ASSERT_TRUE(a.rope_scaling.has_value());
  EXPECT_EQ(a.rope_scaling->rope_type, "llama3");
  EXPECT_FLOAT_EQ(a.rope_scaling->factor, 8.0f);
  EXPECT_EQ(a.rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_EQ(a.hidden_act, "xielu");
  EXPECT_FALSE(parse_model_config(tiny_config_json("apertus")).rope_scaling.has_value());  // rope_theta given
  for (auto [extra, message] : std::initializer_list<std::pair<const char*, const char*>>{
           {R"(, "qk_norm": false)", "[config] qk_norm false is not supported (Apertus always norms q and k)"},
           {R"(, "post_norm": true)", "[config] post_norm true is not supported (Apertus's blocks are pre-norm)"},
           {R"(, "mlp_bias": true)", "[config] mlp_bias true is not supported (Apertus's MLP has no biases)"}})
    EXPECT_EQ(error_of([&] { parse_model_config(tiny_config_json("apertus", extra)); }), message) << extra;
  // xielu is an activation of ungated MLPs, with its layer's scalars.
  EXPECT_EQ(error_of([] {
              create_model(parse_model_config(tiny_config_json("llama", R"(, "hidden_act": "xielu")")), tiny_weights());
            }),
            "[model] the xielu activation is implemented for ungated MLPs only (apertus)");
}

TEST(Config, HunyuanAlphaRopeAndHeliumBiases) {
  // HunYuanDenseV1: "dynamic" RoPE with a fixed alpha is a static base theta * alpha^(d / (d - 2)); dynamic without
  // alpha stays refused. Helium: attention_bias on q / k / v only.
  auto h = parse_model_config(tiny_config_json(
      "hunyuan_v1_dense", R"(, "head_dim": 10, "rope_scaling": {"type": "dynamic", "alpha": 16.0, "factor": 1.0})"));
  EXPECT_FALSE(h.rope_scaling.has_value());
  EXPECT_NEAR(h.rope_theta, 10000.0f * 32.0f, 1.0f);  // 16^(10 / 8) = 32
  EXPECT_EQ(
      error_of([] {
        parse_model_config(tiny_config_json("hunyuan_v1_dense", R"(, "rope_scaling": {"type": "dynamic",
                  "factor": 2.0})"));
      }),
      "[config] unsupported rope_type 'dynamic' (supported: default, linear, llama3, longrope, yarn, proportional)");
  EXPECT_EQ(
      error_of([] {
        parse_model_config(tiny_config_json("llama", R"(, "rope_scaling": {"type": "dynamic", "alpha": 4.0,
                  "factor": 2.0})"));
      }),
      "[config] unsupported rope_type 'dynamic' (supported: default, linear, llama3, longrope, yarn, proportional)");
  auto he = parse_model_config(tiny_config_json("helium", R"(, "attention_bias": true, "head_dim": 8)"));
  EXPECT_TRUE(he.qkv_bias.value_or(false));
  EXPECT_FALSE(he.attention_bias);
  EXPECT_FLOAT_EQ(he.rope_theta, 10000.0f);  // (tiny_config_json's rope_theta over HeliumConfig's 100000)
}

TEST(Models, GptNeoxNamesBothWays) {
  // transformers' gpt_neox.* and mlx-lm's model.h.* / model.embed_out name the same tensors; buffers are dropped.
  WeightMap hf{{"gpt_neox.embed_in.weight", mx::zeros({2})},
               {"gpt_neox.layers.3.attention.query_key_value.bias", mx::zeros({2})},
               {"gpt_neox.layers.3.attention.rotary_emb.inv_freq", mx::zeros({2})},
               {"gpt_neox.layers.3.mlp.dense_4h_to_h.weight", mx::zeros({2})},
               {"gpt_neox.final_layer_norm.bias", mx::zeros({2})},
               {"embed_out.weight", mx::zeros({2})}};
  auto m = to_model_names("gpt_neox", hf);
  std::vector<std::string> names;
  for (auto& [k, v] : m) names.push_back(k);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"lm_head.weight", "model.embed_tokens.weight",
                                             "model.final_layer_norm.bias", "model.layers.3.mlp.dense_4h_to_h.weight",
                                             "model.layers.3.self_attn.query_key_value.bias"}));
  auto mlx = to_checkpoint_names("gpt_neox", m, CheckpointLayout::MlxLm);
  for (const char* n : {"model.embed_in.weight", "model.h.3.attention.query_key_value.bias",
                        "model.h.3.mlp.dense_4h_to_h.weight", "model.final_layer_norm.bias", "model.embed_out.weight"})
    EXPECT_EQ(mlx.count(n), 1u) << n;
  auto back = to_checkpoint_names("gpt_neox", to_model_names("gpt_neox", mlx), CheckpointLayout::Hf);
  for (const char* n : {"gpt_neox.embed_in.weight", "gpt_neox.layers.3.attention.query_key_value.bias",
                        "gpt_neox.final_layer_norm.bias", "embed_out.weight"})
    EXPECT_EQ(back.count(n), 1u) << n;
}

TEST(Models, StableLmPerHeadNormsStackAndSplit) {
  // stablelm's self_attn.q_layernorm.norms.<h>.weight <-> the decoder's self_attn.q_norm.weight [heads, head_dim].
  WeightMap w;
  for (int h = 0; h < 3; ++h)
    w.emplace("model.layers.0.self_attn.q_layernorm.norms." + std::to_string(h) + ".weight",
              mx::full({4}, static_cast<float>(h)));
  auto stacked = to_model_names("stablelm", w);
  ASSERT_EQ(stacked.count("model.layers.0.self_attn.q_norm.weight"), 1u);
  const auto& q = stacked.at("model.layers.0.self_attn.q_norm.weight");
  EXPECT_EQ(q.shape(), (mx::Shape{3, 4}));
  EXPECT_EQ(mx::take(mx::take(q, 2, 0), 0, 0).item<float>(), 2.0f);  // head 2's row
  auto back = to_checkpoint_names("stablelm", stacked, CheckpointLayout::Hf);
  EXPECT_EQ(back.size(), 3u);
  EXPECT_TRUE(mx::array_equal(back.at("model.layers.0.self_attn.q_layernorm.norms.1.weight"), mx::full({4}, 1.0f))
                  .item<bool>());
  w.erase("model.layers.0.self_attn.q_layernorm.norms.1.weight");
  EXPECT_EQ(error_of([&] { to_model_names("stablelm", w); }),
            "[model] 'model.layers.0.self_attn.q_layernorm.norms' lacks head 1's weight");
}

TEST(Config, QuantizationModes) {
  auto top = parse_model_config(tiny_config_json("llama", R"(, "quantization": {"mode": "nvfp4"})")).quantization;
  ASSERT_TRUE(top.has_value());
  EXPECT_EQ(top->mode, "nvfp4");
  EXPECT_EQ(top->group_size, 16);
  EXPECT_EQ(top->bits, 4);
  auto modules = io::quantization_modules(
      tiny_config_json("llama", R"(, "quantization": {"group_size": 32, "bits": 4, "mode": "mxfp4",
                  "model.layers.0.mlp.gate": {"group_size": 64, "bits": 8},
                  "model.layers.0.self_attn.q_proj": {"mode": "mxfp8"}, "lm_head": true})"));
  ASSERT_EQ(modules.size(), 2u);
  EXPECT_EQ(modules.at("model.layers.0.mlp.gate").mode, "affine");
  EXPECT_EQ(modules.at("model.layers.0.mlp.gate").bits, 8);
  EXPECT_EQ(modules.at("model.layers.0.self_attn.q_proj").group_size, 32);
  EXPECT_EQ(modules.at("model.layers.0.self_attn.q_proj").bits, 8);
  // The pairs MLX's modes do not take, in one line naming the module.
  EXPECT_EQ(
      error_of([] {
        parse_model_config(tiny_config_json(
            "llama", R"(, "quantization": {"group_size": 64, "bits": 4, "lm_head": {"mode": "mxfp4", "bits": 8}})"));
      }),
      "[config] unsupported quantization for 'lm_head' (mode mxfp4, bits 8, group_size 32)");
  EXPECT_EQ(
      error_of([] {
        parse_model_config(tiny_config_json(
            "llama", R"(, "quantization": {"mode": "nvfp4", "lm_head": {"mode": "nvfp4", "quantize_input": true}})"));
      }),
      "[config] quantized activations (quantize_input) for 'lm_head' are not supported");
}
