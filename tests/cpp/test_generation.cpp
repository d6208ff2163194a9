// Logits processors on hand-computed examples, sampling reproducibility, and the Generator's
// stopping rules on a fake model whose next token is (last token + 1) % V.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/generate.h"
#include "mlxgp/logits_processor.h"
#include "test_generation_fake.h"
#include "test_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using mlxgp::testing::error_of;
using mlxgp::testing::FakeModel;
using mlxgp::testing::to_vec;

namespace {

const float kInf = std::numeric_limits<float>::infinity();

mx::array row(std::vector<float> v) { return mx::array(v.data(), {1, static_cast<int>(v.size())}); }

mx::array none() { return mx::array(0); }

GenerationConfig greedy(int max_new) {
  GenerationConfig c;
  c.max_new_tokens = max_new;
  return c;
}

std::vector<int> run(Model& m, const std::vector<int>& prompt, const GenerationConfig& c, FinishReason* why = nullptr,
                     GeneratorOptions o = {}) {
  Generator g(m, c, o);
  g.prefill(prompt);
  while (!g.done()) g.step();
  if (why) *why = g.finish_reason();
  return g.generated();
}

}  // namespace

// ---- processors

TEST(Processors, TemperatureDivides) {
  auto p = make_temperature_warper(2.0);
  auto out = to_vec(p->apply(row({1, 2, -3, 4}), none()));
  EXPECT_EQ(out, (std::vector<float>{0.5f, 1.0f, -1.5f, 2.0f}));
  EXPECT_NE(error_of([] { make_temperature_warper(0.0); }), "");
}

TEST(Processors, TopKKeepsTiesWithTheKthValue) {
  // HF: remove logits < the k-th largest; 3 and 3 tie for 2nd place, so top_k=2 keeps both.
  auto out = to_vec(make_top_k_warper(2)->apply(row({1, 3, 3, 2}), none()));
  EXPECT_EQ(out, (std::vector<float>{-kInf, 3, 3, -kInf}));
  out = to_vec(make_top_k_warper(3)->apply(row({1, 3, 3, 2}), none()));
  EXPECT_EQ(out, (std::vector<float>{-kInf, 3, 3, 2}));
  out = to_vec(make_top_k_warper(1)->apply(row({5, 1, 7, 7}), none()));
  EXPECT_EQ(out, (std::vector<float>{-kInf, -kInf, 7, 7}));
  // k >= V leaves everything; min_tokens_to_keep raises k.
  out = to_vec(make_top_k_warper(10)->apply(row({1, 2}), none()));
  EXPECT_EQ(out, (std::vector<float>{1, 2}));
  out = to_vec(make_top_k_warper(1, 2)->apply(row({4, 1, 3}), none()));
  EXPECT_EQ(out, (std::vector<float>{4, -kInf, 3}));
}

TEST(Processors, TopKIsPerRow) {
  float v[] = {1, 2, 3, 4, 4, 3, 2, 1};
  auto out = to_vec(make_top_k_warper(2)->apply(mx::array(v, {2, 4}), none()));
  EXPECT_EQ(out, (std::vector<float>{-kInf, -kInf, 3, 4, 4, 3, -kInf, -kInf}));
}

TEST(Processors, TopPNucleus) {
  // probabilities 0.1, 0.2, 0.3, 0.4 (ascending cumsum 0.1, 0.3, 0.6, 1.0)
  auto logits = row({std::log(0.3f), std::log(0.1f), std::log(0.4f), std::log(0.2f)});
  // threshold 1 - 0.5 = 0.5: drop cum <= 0.5 -> 0.1 and 0.2 go, 0.3 and 0.4 stay.
  auto out = to_vec(make_top_p_warper(0.5)->apply(logits, none()));
  EXPECT_EQ(out[1], -kInf);
  EXPECT_EQ(out[3], -kInf);
  EXPECT_EQ(out[0], std::log(0.3f));
  EXPECT_EQ(out[2], std::log(0.4f));
  // threshold 0.35: only 0.1 (cum 0.1) and 0.2 (cum 0.3) are dropped; at 0.25 only 0.1.
  out = to_vec(make_top_p_warper(0.65)->apply(logits, none()));
  EXPECT_EQ(std::isinf(out[1]) + std::isinf(out[3]) + std::isinf(out[0]) + std::isinf(out[2]), 2);
  out = to_vec(make_top_p_warper(0.75)->apply(logits, none()));
  EXPECT_TRUE(std::isinf(out[1]));
  EXPECT_FALSE(std::isinf(out[3]) || std::isinf(out[0]) || std::isinf(out[2]));
  // top_p = 1 keeps everything.
  out = to_vec(make_top_p_warper(1.0)->apply(logits, none()));
  for (float x : out) EXPECT_FALSE(std::isinf(x));
}

TEST(Processors, TopPKeepsAtLeastTheMostLikelyToken) {
  // A tiny top_p would drop everything; min_tokens_to_keep = 1 keeps the argmax (HF).
  auto out = to_vec(make_top_p_warper(1e-6)->apply(row({0, 1, 2, 0.5}), none()));
  EXPECT_EQ(out, (std::vector<float>{-kInf, -kInf, 2, -kInf}));
  out = to_vec(make_top_p_warper(1e-6, 2)->apply(row({0, 1, 2, 0.5}), none()));
  EXPECT_EQ(out, (std::vector<float>{-kInf, 1, 2, -kInf}));
  // Boundary: cum exactly <= 1 - top_p is removed. Uniform over 4 -> cum 0.25, 0.5, 0.75, 1.0 (exact
  // in float32); top_p = 0.5 -> threshold 0.5 removes the first two sorted positions.
  out = to_vec(make_top_p_warper(0.5)->apply(row({0, 0, 0, 0}), none()));
  int removed = 0;
  for (float x : out) removed += std::isinf(x);
  EXPECT_EQ(removed, 2);
}

TEST(Processors, PipelineFollowsHfOrderAndClones) {
  GenerationConfig c;
  EXPECT_EQ(build_logits_processors(c).size(), 0u);  // greedy: no warpers
  c.do_sample = true;
  EXPECT_EQ(build_logits_processors(c).size(), 1u);  // only top_k=50 (temperature 1 and top_p 1 are no-ops)
  c.temperature = 0.5;
  c.top_p = 0.9;
  auto list = build_logits_processors(c);
  EXPECT_EQ(list.size(), 3u);
  // temperature first, then top_k=2: logits {1,2,3,4} -> {2,4,6,8} -> {-inf,-inf,6,8}; top_p 0.9 keeps both?
  c.top_k = 2;
  auto two = build_logits_processors(c);
  auto copy = two;  // deep copy via clone()
  auto out = to_vec(copy.apply(row({1, 2, 3, 4}), none()));
  EXPECT_EQ(out[0], -kInf);
  EXPECT_EQ(out[1], -kInf);
  EXPECT_EQ(out[3], 8.0f);
  // p(6) = 1/(1+e^2) = 0.119 > 0.1 = 1 - top_p, so it stays.
  EXPECT_EQ(out[2], 6.0f);
}

// ---- generation loop

TEST(Generator, GreedyFollowsTheModelAndStopsAtMaxNewTokens) {
  FakeModel m(16, 1000);
  FinishReason why;
  EXPECT_EQ(run(m, {3}, greedy(4), &why), (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(why, FinishReason::Length);
}

TEST(Generator, StopsOnAnyEosTokenAndKeepsIt) {
  FakeModel m(16, 1000);
  auto c = greedy(10);
  c.eos_token_id = std::vector<int>{9, 6};
  FinishReason why;
  EXPECT_EQ(run(m, {3}, c, &why), (std::vector<int>{4, 5, 6}));
  EXPECT_EQ(why, FinishReason::Eos);
  c.eos_token_id = std::vector<int>{};  // --ignore-eos: exactly max_new_tokens
  EXPECT_EQ(run(m, {3}, c, &why).size(), 10u);
  EXPECT_EQ(why, FinishReason::Length);
}

TEST(Generator, MaxLengthCountsThePrompt) {
  FakeModel m(64, 1000);
  GenerationConfig c;  // max_length 20
  EXPECT_EQ(run(m, {1, 2, 3, 4, 5}, c).size(), 15u);
  c.max_new_tokens = 3;  // max_new_tokens wins
  EXPECT_EQ(run(m, {1, 2, 3, 4, 5}, c).size(), 3u);
  GenerationConfig d;
  d.max_length = 3;
  EXPECT_NE(error_of([&] { run(m, {1, 2, 3}, d); }).find("[generate] prompt has 3 tokens but max_length is 3"),
            std::string::npos);
}

TEST(Generator, ContextLimit) {
  FakeModel m(64, 8);
  FinishReason why;
  EXPECT_EQ(run(m, {1, 2, 3, 4, 5}, greedy(10), &why).size(), 3u);
  EXPECT_EQ(why, FinishReason::Length);
  EXPECT_EQ(error_of([&] { run(m, {1, 2, 3, 4, 5, 6, 7, 8}, greedy(1)); }),
            "[generate] prompt has 8 tokens, which fill the model's context (8): no position is left for a new token");
  EXPECT_EQ(error_of([&] { run(m, {1, 2, 3, 4, 5, 6, 7, 8, 9}, greedy(1)); }),
            "[generate] prompt has 9 tokens, longer than the model's context (8)");
  // A minimum the context cannot hold is refused, not silently cut with the budget.
  auto at_least = greedy(10);
  at_least.min_new_tokens = 4;
  EXPECT_EQ(error_of([&] { run(m, {1, 2, 3, 4, 5}, at_least); }),
            "[generate] min_new_tokens 4 cannot be met: the prompt (5 positions) leaves 3 of the model's context (8)");
  at_least.min_new_tokens = 3;
  EXPECT_EQ(run(m, {1, 2, 3, 4, 5}, at_least).size(), 3u);
  auto min_length = greedy(10);
  min_length.min_length = 9;
  EXPECT_NE(error_of([&] { run(m, {1, 2, 3, 4, 5}, min_length); }).find("min_length 9 cannot be met"),
            std::string::npos);
}

TEST(Generator, RejectsBadPrompts) {
  FakeModel m(16, 100);
  EXPECT_EQ(error_of([&] { run(m, {1, 16}, greedy(1)); }),
            "[generate] token id 16 is outside the vocabulary (size 16)");
  EXPECT_EQ(error_of([&] { run(m, {-1}, greedy(1)); }), "[generate] token id -1 is outside the vocabulary (size 16)");
  EXPECT_EQ(error_of([&] { run(m, {}, greedy(1)); }), "[generate] the prompt is empty");
  auto bad = greedy(1);
  bad.top_p = 2;
  EXPECT_NE(error_of([&] { Generator g(m, bad); }).find("[config] field 'top_p'"), std::string::npos);
}

TEST(Generator, ChunkedPrefillMatchesAndFillsTheCache) {
  FakeModel a(32, 100), b(32, 100);
  std::vector<int> prompt = {5, 9, 2, 7, 1, 3, 8, 4, 6, 10};
  GeneratorOptions small;
  small.prefill_chunk_size = 3;
  auto c = greedy(5);
  c.eos_token_id = std::vector<int>{};
  EXPECT_EQ(run(a, prompt, c, nullptr, small), run(b, prompt, c));
  EXPECT_EQ(run(a, prompt, c, nullptr, small), (std::vector<int>{11, 12, 13, 14, 15}));
  // 10 prompt positions, then one forward per generated token except the last (never needed).
  FakeModel m(32, 100);
  run(m, prompt, c, nullptr, small);
  EXPECT_EQ(m.forwarded_, 10 + 4);
}

TEST(Generator, SamplingIsReproducibleWithASeed) {
  FakeModel m(1000, 10000, /*uniform=*/true);
  GenerationConfig c = greedy(12);
  c.do_sample = true;
  c.top_k = 0;
  c.seed = 7;
  auto a = run(m, {1}, c), b = run(m, {1}, c);
  EXPECT_EQ(a, b);
  c.seed = 8;
  EXPECT_NE(run(m, {1}, c), a);
  std::set<int> distinct(a.begin(), a.end());
  EXPECT_GT(distinct.size(), 6u);  // uniform over 1000 tokens: repeats are rare
}

TEST(Generator, SamplingRespectsTopK) {
  FakeModel m(16, 1000);  // one token has logit 10, the rest 0
  GenerationConfig c = greedy(8);
  c.do_sample = true;
  c.top_k = 1;
  c.seed = 1;
  EXPECT_EQ(run(m, {3}, c), (std::vector<int>{4, 5, 6, 7, 8, 9, 10, 11}));
}

TEST(Generator, GenerateStreamsTextlessWithoutTokenizer) {
  FakeModel m(16, 1000);
  int calls = 0;
  auto r = generate(m, nullptr, {3}, greedy(3), [&](int, const std::string& t) {
    ++calls;
    EXPECT_TRUE(t.empty());
  });
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(r.prompt_token_ids, std::vector<int>{3});
  ASSERT_EQ(r.sequences.size(), 1u);
  EXPECT_EQ(r.sequences[0].token_ids, (std::vector<int>{4, 5, 6}));
  EXPECT_EQ(to_string(r.sequences[0].finish_reason), "length");
  EXPECT_EQ(r.stats.prompt_tokens, 1);
  EXPECT_EQ(r.stats.generated_tokens, 3);
  EXPECT_GT(r.stats.decode_tokens_per_s, 0);
}

TEST(Generator, MaxTimeStops) {
  FakeModel m(16, 100000);
  auto c = greedy(50000);
  c.eos_token_id = std::vector<int>{};
  c.max_time = 1e-9;
  FinishReason why;
  auto out = run(m, {1}, c, &why);
  EXPECT_EQ(why, FinishReason::MaxTime);
  EXPECT_EQ(out.size(), 1u);
}

TEST(Generator, SampledFrequenciesFollowTheWarpedDistribution) {
  // p = 0.1, 0.2, 0.3, 0.4. With top_p = 0.5 (HF: drop ascending cum <= 0.5) only tokens 2 and 3
  // remain, renormalised to 3/7 and 4/7; with temperature 0.5 probabilities become p^2 / sum p^2.
  FakeModel m({std::log(0.1f), std::log(0.2f), std::log(0.3f), std::log(0.4f)}, 1 << 20);
  auto frequencies = [&](GenerationConfig c) {
    c.do_sample = true;
    c.top_k = 0;
    c.max_new_tokens = 3000;
    c.eos_token_id = std::vector<int>{};
    c.seed = 11;
    std::vector<double> f(4, 0);
    for (int t : run(m, {0}, c)) f[t] += 1.0 / 3000;
    return f;
  };
  GenerationConfig plain;
  auto f = frequencies(plain);
  const double p[] = {0.1, 0.2, 0.3, 0.4};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(f[i], p[i], 0.03) << i;  // ~3.5 sigma at n=3000
  GenerationConfig nucleus;
  nucleus.top_p = 0.5;
  f = frequencies(nucleus);
  EXPECT_EQ(f[0] + f[1], 0.0);
  EXPECT_NEAR(f[2], 3.0 / 7, 0.03);
  GenerationConfig cold;
  cold.temperature = 0.5;
  f = frequencies(cold);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(f[i], p[i] * p[i] / 0.3, 0.03) << i;
}
