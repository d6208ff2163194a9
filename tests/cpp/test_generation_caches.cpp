// The Generator's KV caches: max_kv_size / kv_bits pick the cache (cache_options_from), the prompt is
// prefilled as mlx-lm's generate_step does (prompt[:-1] in steps, then the last token), and a saved
// prompt cache gives the tokens of a generation without it.
#include <gtest/gtest.h>

#include "mlxgp/generate.h"
#include "mlxgp/prompt_cache.h"
#include "mlxgp/quantized_kv_cache.h"
#include "mlxgp/rotating_kv_cache.h"
#include "test_models_util.h"

namespace mx = mlx::core;

namespace mlxgp::testing {
namespace {

std::unique_ptr<Model> tiny() { return create_model(parse_model_config(tiny_config_json()), tiny_weights(7)); }

std::vector<int> prompt() {
  std::vector<int> ids;
  for (int i = 0; i < 21; ++i) ids.push_back((i * 7 + 3) % 64);
  return ids;
}

std::vector<int> run(Model& m, GenerationConfig c, GeneratorOptions o = {}, KVCacheList* keep = nullptr) {
  Generator g(m, c, o);
  g.prefill(prompt());
  while (!g.done()) g.step();
  if (keep) *keep = std::move(g.caches());
  return g.generated();
}

GenerationConfig greedy(int n) {
  GenerationConfig c;
  c.max_new_tokens = n;
  return c;
}

TEST(GeneratorCaches, RotatingCacheFollowsGenerateStep) {
  auto model = tiny();
  auto c = greedy(12);
  c.max_kv_size = 8;
  GeneratorOptions o;
  o.kv_prefill_step_size = 6;
  KVCacheList caches;
  auto got = run(*model, c, o, &caches);
  auto* rot = dynamic_cast<RotatingKVCache*>(caches[0].get());
  ASSERT_NE(rot, nullptr);
  EXPECT_EQ(rot->size(), 8);
  // generate_step by hand: prompt[:-1] in steps of 6, the last prompt token, then one token per call.
  auto ids = prompt();
  auto manual = make_caches(*model, cache_options_from(c));
  auto fwd = [&](const std::vector<int>& t) {
    auto l = model->forward(mx::array(t.data(), {1, static_cast<int>(t.size())}, mx::int32), manual);
    auto last = mx::slice(l, {0, l.shape(1) - 1, 0}, {1, l.shape(1), l.shape(2)});
    return mx::argmax(mx::reshape(last, {-1})).item<uint32_t>();
  };
  for (size_t i = 0; i + 1 < ids.size(); i += 6) fwd({ids.begin() + i, ids.begin() + std::min(i + 6, ids.size() - 1)});
  std::vector<int> want = {static_cast<int>(fwd({ids.back()}))};
  while (want.size() < 12) want.push_back(static_cast<int>(fwd({want.back()})));
  EXPECT_EQ(got, want);
}

TEST(GeneratorCaches, QuantizedCacheErrors) {
  auto model = tiny();
  auto c = greedy(4);
  c.kv_bits = 8;
  c.kv_group_size = 32;  // head_dim of the tiny model is 8: no group fits, a clear error
  EXPECT_EQ(error_of([&] { run(*model, c); }), "[cache] head_dim 8 is not a multiple of kv group size 32");
  c.max_kv_size = 8;
  auto msg = error_of([&] { Generator(*model, c); });
  EXPECT_NE(msg.find("max_kv_size"), std::string::npos) << msg;
}

TEST(GeneratorCaches, PromptCacheGivesTheSameTokens) {
  auto model = tiny();
  auto c = greedy(10);
  auto plain = run(*model, c);
  auto ids = prompt();
  GeneratorOptions o;
  o.prompt_cache = std::make_shared<PromptCache>(make_prompt_cache(*model, {ids.begin(), ids.begin() + 13}));
  EXPECT_EQ(run(*model, c, o), plain);
  EXPECT_EQ(run(*model, c, o), plain);                                             // the saved prefix is reusable
  o.prompt_cache = std::make_shared<PromptCache>(make_prompt_cache(*model, ids));  // all of it: last one recomputed
  EXPECT_EQ(run(*model, c, o), plain);
  o.prompt_cache = std::make_shared<PromptCache>(make_prompt_cache(*model, {1, 2}));
  EXPECT_EQ(error_of([&] { run(*model, c, o); }),
            "[prompt-cache] the prompt does not start with the cached tokens (first difference at token 0)");
}

TEST(GeneratorCaches, MemoryTraceRecordsTheAskedCounts) {
  auto model = tiny();
  GeneratorOptions o;
  o.memory_trace_at = {2, 5, 99};
  Generator g(*model, greedy(6), o);
  g.prefill(prompt());
  while (!g.done()) g.step();
  ASSERT_EQ(g.memory_trace().size(), 2u);
  EXPECT_EQ(g.memory_trace()[0].tokens, 2);
  EXPECT_EQ(g.memory_trace()[1].tokens, 5);
  EXPECT_GT(g.memory_trace()[1].peak_bytes, 0u);
}

}  // namespace
}  // namespace mlxgp::testing
