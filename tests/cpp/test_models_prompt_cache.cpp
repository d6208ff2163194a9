// Saved prompt caches (prompt_cache.h): save/load round trip, continuation equals a full forward,
// and the checks on load (other model, corrupt file, inconsistent tensors, prompt prefix).
#include <gtest/gtest.h>

#include "mlxgp/prompt_cache.h"
#include "mlxgp/safetensors_io.h"
#include "test_models_util.h"

namespace mx = mlx::core;

namespace mlxgp::testing {
namespace {

std::unique_ptr<Model> tiny(uint64_t seed) {
  return create_model(parse_model_config(tiny_config_json()), tiny_weights(seed));
}

TEST(PromptCache, RoundTripContinuesLikeAFullForward) {
  TempDir t;
  auto model = tiny(3);
  std::vector<int> ids = {5, 9, 2, 7, 11, 3, 8, 1};
  auto saved = make_prompt_cache(*model, {ids.begin(), ids.begin() + 5}, 2);
  save_prompt_cache((t / "p.safetensors").string(), saved);
  auto loaded = load_prompt_cache((t / "p.safetensors").string(), *model);
  EXPECT_EQ(loaded.token_ids, (std::vector<int>{5, 9, 2, 7, 11}));
  EXPECT_EQ(loaded.model_identity, model_identity(*model));
  auto caches = clone_caches(loaded);
  EXPECT_EQ(caches[0]->offset(), 5);
  auto rest = model->forward(mx::array(ids.data() + 5, {1, 3}, mx::int32), caches);
  auto full = logits_of(*model, ids);
  EXPECT_LT(max_abs_diff(rest, mx::slice(full, {0, 5, 0}, {1, 8, 64})), 1e-5f);
  EXPECT_EQ(loaded.caches[0]->offset(), 5);  // the clone left the loaded cache as it was
}

TEST(PromptCache, RejectsOtherModelsAndBadFiles) {
  TempDir t;
  auto model = tiny(3);
  const std::string path = (t / "p.safetensors").string();
  save_prompt_cache(path, make_prompt_cache(*model, {4, 5, 6}));
  auto other = tiny(4);  // same shapes, other weights
  EXPECT_NE(error_of([&] { load_prompt_cache(path, *other); }).find("was made by another model"), std::string::npos);
  auto bigger = create_model(parse_model_config(tiny_config_json("llama", R"(, "num_hidden_layers": 3)")), [] {
    auto w = tiny_weights(3);
    for (auto& [k, v] : tiny_weights(3))
      if (k.rfind("model.layers.1.", 0) == 0) w.insert_or_assign("model.layers.2." + k.substr(15), v);
    return w;
  }());
  EXPECT_NE(error_of([&] { load_prompt_cache(path, *bigger); }).find("[prompt-cache]"), std::string::npos);
  // The same weights under other config.json settings compute other keys and values: rotary base, rotary
  // scaling, norm epsilon.
  for (const char* extra : {R"(, "rope_theta": 500.0)", R"(, "rope_scaling": {"rope_type": "linear", "factor": 2.0})",
                            R"(, "rms_norm_eps": 1e-3)"}) {
    auto edited = create_model(parse_model_config(tiny_config_json("llama", extra)), tiny_weights(3));
    EXPECT_NE(error_of([&] { load_prompt_cache(path, *edited); }).find("under other config.json settings"),
              std::string::npos)
        << extra;
  }
  // Yarn's own fields are digested too: a cache made under one yarn ramp is refused under another.
  const char* yarn = R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32)";
  auto yarn_model =
      create_model(parse_model_config(tiny_config_json("llama", std::string(yarn) + "}")), tiny_weights(3));
  const std::string yarn_path = (t / "yarn.safetensors").string();
  save_prompt_cache(yarn_path, make_prompt_cache(*yarn_model, {4, 5, 6}));
  EXPECT_NO_THROW(load_prompt_cache(yarn_path, *yarn_model));
  for (const char* field : {R"(, "beta_fast": 16.0})", R"(, "beta_slow": 2.0})", R"(, "truncate": false})",
                            R"(, "mscale": 0.5, "mscale_all_dim": 1.0})"}) {
    auto edited =
        create_model(parse_model_config(tiny_config_json("llama", std::string(yarn) + field)), tiny_weights(3));
    EXPECT_NE(error_of([&] { load_prompt_cache(yarn_path, *edited); }).find("under other config.json settings"),
              std::string::npos)
        << field;
  }
  // Truncated.
  auto bytes = read_file(path);
  write_file(t / "cut.safetensors", bytes.substr(0, bytes.size() / 2));
  EXPECT_EQ(error_of([&] { load_prompt_cache((t / "cut.safetensors").string(), *model); }).rfind("[safetensors]", 0),
            0u);
  // Valid safetensors, wrong shapes under the right metadata.
  auto file = load_safetensors_file(path);
  file.tensors.insert_or_assign("layers.1.keys", mx::zeros({1, 2, 2, 8}));
  save_safetensors_atomic((t / "bad.safetensors").string(), file.tensors, file.metadata);
  EXPECT_EQ(
      error_of([&] { load_prompt_cache((t / "bad.safetensors").string(), *model); }),
      "[prompt-cache] '" + (t / "bad.safetensors").string() + "': layer 1 keys/values must be floating [1, 2, 3, 8]");
  // Not a prompt cache at all.
  save_safetensors_atomic((t / "plain.safetensors").string(), {{"x", mx::zeros({2})}});
  EXPECT_NE(error_of([&] {
              load_prompt_cache((t / "plain.safetensors").string(), *model);
            }).find("is not an mlxgp prompt cache"),
            std::string::npos);
}

TEST(PromptCache, PromptMustStartWithTheCachedTokens) {
  auto model = tiny(3);
  auto cache = make_prompt_cache(*model, {4, 5, 6});
  check_prompt_prefix(cache, {4, 5, 6});
  check_prompt_prefix(cache, {4, 5, 6, 7});
  EXPECT_EQ(error_of([&] { check_prompt_prefix(cache, {4, 9, 6, 7}); }),
            "[prompt-cache] the prompt does not start with the cached tokens (first difference at token 1)");
  EXPECT_EQ(error_of([&] { check_prompt_prefix(cache, {4, 5}); }),
            "[prompt-cache] the prompt has 2 tokens, fewer than the 3 cached tokens");
  EXPECT_EQ(error_of([&] { make_prompt_cache(*model, {}); }), "[prompt-cache] the prompt is empty");
  EXPECT_EQ(error_of([&] { make_prompt_cache(*model, {64}); }),
            "[prompt-cache] token id 64 is outside the vocabulary (size 64)");
}

}  // namespace
}  // namespace mlxgp::testing
