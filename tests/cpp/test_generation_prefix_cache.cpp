// Prompt-prefix reuse in the BatchEngine (BatchEngineOptions::prefix_cache): a request whose prompt
// extends a finished request's prompt and output prefills only the new suffix and generates what
// generate() generates from the whole prompt (tokens, logits within the rounding of a split prefill);
// batch rows are stored without their padding; settings that change what the caches hold never reuse.
#include <gtest/gtest.h>

#include "mlxgp/batch_engine.h"
#include "mlxgp/prompt_cache.h"
#include "mlxgp/steering.h"
#include "test_models_util.h"

namespace mx = mlx::core;

namespace mlxgp::testing {
namespace {

std::unique_ptr<Model> tiny(uint64_t seed = 11) {
  return create_model(parse_model_config(tiny_config_json()), tiny_weights(seed));
}

std::vector<int> ids_of(int n, int salt) {
  std::vector<int> ids;
  for (int i = 0; i < n; ++i) ids.push_back((i * 13 + salt * 7 + 1) % 64);
  return ids;
}

std::vector<int> joined(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Counts the positions forwarded while prompts are prefilled (the engine sets the prompt length for a
// prefill and 0 for decode steps). At the final hidden state, so it changes no key or value.
struct PrefillCounter : Hook {
  int positions = 0;
  bool wants(HookPoint point, int) const override { return point == HookPoint::FinalHidden; }
  mx::array apply(const HookSite& site, const mx::array& x, Model&) override {
    if (site.prompt_length > 0) positions += x.shape(1);
    return x;
  }
};

struct Engine {
  std::shared_ptr<PrefixCache> cache = std::make_shared<PrefixCache>(std::size_t{64} << 20);
  BatchEngine engine;
  explicit Engine(Model& m, int rows = 8) : engine(m, nullptr, BatchEngineOptions{rows, cache}) {}
  // Submits the prompts together and steps until all are done; results in input order.
  std::vector<GenerationResult> run(const std::vector<std::vector<int>>& prompts,
                                    const std::vector<GenerationConfig>& configs) {
    std::vector<int> ids;
    for (size_t i = 0; i < prompts.size(); ++i) ids.push_back(engine.submit({prompts[i], configs[i], {}, {}}));
    std::vector<std::optional<GenerationResult>> got(prompts.size());
    while (engine.busy())
      for (int id : engine.step())
        for (size_t i = 0; i < ids.size(); ++i)
          if (ids[i] == id) got[i] = engine.take_result(id);
    std::vector<GenerationResult> out;
    for (auto& g : got) {
      EXPECT_TRUE(g);
      out.push_back(g ? std::move(*g) : GenerationResult{});
    }
    return out;
  }
  GenerationResult run(const std::vector<int>& prompt, const GenerationConfig& config) {
    return run(std::vector<std::vector<int>>{prompt}, {config}).at(0);
  }
};

GenerationConfig greedy(int new_tokens) {
  GenerationConfig c;
  c.max_new_tokens = new_tokens;
  c.output_logits = true;
  return c;
}

// The request's result equals generate()'s from the same prompt: the reference prefills it whole.
void expect_same_as_generate(Model& m, const std::vector<int>& prompt, const GenerationConfig& c,
                             const GenerationResult& got) {
  auto ref = generate(m, nullptr, prompt, c);
  ASSERT_EQ(got.sequences.size(), ref.sequences.size());
  for (size_t s = 0; s < ref.sequences.size(); ++s) {
    EXPECT_EQ(got.sequences[s].token_ids, ref.sequences[s].token_ids) << "sequence " << s;
    if (ref.sequences[s].logits) {
      ASSERT_TRUE(got.sequences[s].logits);
      EXPECT_LT(max_abs_diff(*got.sequences[s].logits, *ref.sequences[s].logits), 1e-4f);
    }
  }
}

TEST(PrefixReuse, AContinuationPrefillsOnlyItsNewSuffix) {
  auto m = tiny();
  auto counter = std::make_shared<PrefillCounter>();
  add_hook(*m, counter);
  Engine e(*m);
  const auto prompt = ids_of(9, 1);
  auto first = e.run(prompt, greedy(6));
  ASSERT_EQ(first.sequences[0].token_ids.size(), 6u);
  EXPECT_EQ(counter->positions, 9);
  auto s0 = e.cache->stats();
  EXPECT_EQ(s0.lookups, 1);
  EXPECT_EQ(s0.hits, 0);
  EXPECT_EQ(s0.entries, 1);

  // The next turn: the history (prompt and reply) and a new message.
  const auto next = joined(joined(prompt, first.sequences[0].token_ids), {5, 17, 33});
  counter->positions = 0;
  auto second = e.run(next, greedy(7));
  auto s1 = e.cache->stats();
  EXPECT_EQ(s1.hits, 1);
  const long long reused = s1.tokens_reused;
  // The stored row holds the prompt and the fed tokens: every generated token but the last, or all of
  // them when the step queued ahead fed the last one too.
  EXPECT_GE(reused, 9 + 5);
  EXPECT_LE(reused, 9 + 6);
  EXPECT_EQ(counter->positions, static_cast<int>(next.size()) - reused);
  EXPECT_EQ(s1.tokens_prefilled - s0.tokens_prefilled, static_cast<long long>(next.size()) - reused);
  expect_same_as_generate(*m, next, greedy(7), second);
  // The second sequence extends the first: it replaced it.
  EXPECT_EQ(s1.entries, 1);

  // A sampled third turn gets generate()'s tokens for its seed.
  GenerationConfig sampled = greedy(8);
  sampled.do_sample = true;
  sampled.temperature = 0.9;
  sampled.seed = 4;
  const auto third = joined(joined(next, second.sequences[0].token_ids), {2});
  auto r3 = e.run(third, sampled);
  EXPECT_EQ(e.cache->stats().hits, 2);
  expect_same_as_generate(*m, third, sampled, r3);
}

TEST(PrefixReuse, BatchRowsAreStoredWithoutTheirPadding) {
  auto m = tiny();
  Engine e(*m);
  // Prompts of different lengths finishing at different steps (padding on both sides of each).
  std::vector<std::vector<int>> prompts = {ids_of(3, 1), ids_of(12, 2), ids_of(7, 3), ids_of(5, 4)};
  std::vector<GenerationConfig> configs = {greedy(4), greedy(9), greedy(6), greedy(5)};
  configs[3].do_sample = true;  // two sampled rows of one prompt: each row is stored
  configs[3].seed = 3;
  configs[3].num_return_sequences = 2;
  auto first = e.run(prompts, configs);
  EXPECT_EQ(e.cache->stats().entries, 5);
  // Each continuation, together in one batch: each reuses its own row and gets generate()'s tokens.
  std::vector<std::vector<int>> next;
  for (size_t i = 0; i < prompts.size(); ++i)
    next.push_back(joined(joined(prompts[i], first[i].sequences[0].token_ids), {9, 8}));
  next.push_back(joined(joined(prompts[3], first[3].sequences[1].token_ids), {1}));
  std::vector<GenerationConfig> greedy5(next.size(), greedy(5));
  const auto before = e.cache->stats();
  auto second = e.run(next, greedy5);
  const auto after = e.cache->stats();
  EXPECT_EQ(after.hits - before.hits, 5);
  long long history = 0;
  for (size_t i = 0; i < next.size(); ++i) history += static_cast<long long>(next[i].size()) - (i == 4 ? 1 : 2);
  // Every row's prompt and all its fed tokens (at most one generated token each is not in the cache).
  EXPECT_GE(after.tokens_reused - before.tokens_reused, history - static_cast<long long>(next.size()));
  EXPECT_LE(after.tokens_reused - before.tokens_reused, history);
  for (size_t i = 0; i < next.size(); ++i) expect_same_as_generate(*m, next[i], greedy5[i], second[i]);
}

TEST(PrefixReuse, SettingsThatChangeTheCachesNeverReuse) {
  auto m = tiny();
  Engine e(*m);
  const auto prompt = ids_of(10, 5);
  auto first = e.run(prompt, greedy(4));
  const auto next = joined(joined(prompt, first.sequences[0].token_ids), {3, 4});
  auto lookups = [&] { return e.cache->stats().lookups; };
  const auto before = e.cache->stats();

  // A rotating cache holds what depends on how the tokens went in: a miss, and nothing is stored.
  GenerationConfig rotating = greedy(4);
  rotating.max_kv_size = 12;
  rotating.kv_keep = 2;
  expect_same_as_generate(*m, next, rotating, e.run(next, rotating));
  // A saved prompt cache of the request's own: used as it is, counted as a miss.
  GeneratorOptions saved;
  saved.prompt_cache = std::make_shared<PromptCache>(make_prompt_cache(*m, {prompt.begin(), prompt.begin() + 4}));
  int id = e.engine.submit({next, greedy(4), saved, {}});
  std::optional<GenerationResult> r;
  while (e.engine.busy())
    for (int f : e.engine.step())
      if (f == id) r = e.engine.take_result(f);
  ASSERT_TRUE(r);
  expect_same_as_generate(*m, next, greedy(4), *r);
  EXPECT_EQ(lookups() - before.lookups, 2);
  EXPECT_EQ(e.cache->stats().hits, before.hits);

  // Steering changes keys and values (of generated positions too, which the next prompt prefills as
  // prompt positions): no reuse, no storing, and the hooked result.
  const int entries = e.cache->stats().entries;
  auto v = mx::random::normal({32}, 0.0f, 1.0f, mx::random::key(3));
  const int handle =
      add_hook(*m, std::make_shared<ResidualInjectionHook>(std::vector<int>{0}, v, 2.0, HookPositions::Generated));
  auto steered = e.run(next, greedy(4));
  expect_same_as_generate(*m, next, greedy(4), steered);
  m->hooks().remove(handle);
  const auto after = e.cache->stats();
  EXPECT_EQ(after.lookups - before.lookups, 3);
  EXPECT_EQ(after.hits, before.hits);
  EXPECT_EQ(after.entries, entries);
  // Without the hook the continuation hits again.
  e.run(next, greedy(4));
  EXPECT_EQ(e.cache->stats().hits, before.hits + 1);
}

TEST(PrefixReuse, OneCacheServesEnginesOfSeveralModelsApart) {
  auto a = tiny(11), b = tiny(12);  // same shapes, other weights
  Engine ea(*a);
  BatchEngine eb(*b, nullptr, BatchEngineOptions{8, ea.cache});
  const auto prompt = ids_of(8, 2);
  auto first = ea.run(prompt, greedy(3));
  const auto next = joined(joined(prompt, first.sequences[0].token_ids), {7});
  int id = eb.submit({next, greedy(3), {}, {}});
  std::optional<GenerationResult> r;
  while (eb.busy())
    for (int f : eb.step())
      if (f == id) r = eb.take_result(f);
  ASSERT_TRUE(r);
  EXPECT_EQ(ea.cache->stats().hits, 0);
  expect_same_as_generate(*b, next, greedy(3), *r);
}

}  // namespace
}  // namespace mlxgp::testing
