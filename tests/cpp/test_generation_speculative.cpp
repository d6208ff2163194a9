// Speculative / prompt-lookup decoding: candidate lookup, acceptance rules, and the decoding loop on the
// fake model (output identical to plain greedy, stopping, rollback of caches, errors).
#include <gtest/gtest.h>

#include <limits>

#include <map>
#include <string>

#include <mlx/mlx.h>

#include "../../src/generation/speculative/acceptance.h"
#include "../../src/generation/speculative/prompt_lookup.h"
#include "mlxgp/generate.h"
#include "mlxgp/speculative.h"
#include "test_generation_fake.h"

namespace mx = mlx::core;

namespace mlxgp {
namespace {

using speculative::prompt_lookup_candidates;
using testing::FakeModel;

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(PromptLookup, EarliestMatchOfTheLongestNgram) {
  // ids end with "5 6": its earliest occurrence is followed by 7 8 9.
  std::vector<int> ids = {1, 5, 6, 7, 8, 9, 5, 6, 3, 5, 6};
  EXPECT_EQ(prompt_lookup_candidates(ids, 2, 3, {}), (std::vector<int>{7, 8, 9}));
  EXPECT_EQ(prompt_lookup_candidates(ids, 2, 2, {}), (std::vector<int>{7, 8}));
  // A trigram "3 5 6" occurs only at the end (no continuation): fall back to the bigram.
  EXPECT_EQ(prompt_lookup_candidates(ids, 3, 3, {}), (std::vector<int>{7, 8, 9}));
}

TEST(PromptLookup, ShorterNgramAndNoMatch) {
  // "4 6" never occurred before, "6" did: unigram match.
  EXPECT_EQ(prompt_lookup_candidates({6, 1, 2, 4, 6}, 2, 2, {}), (std::vector<int>{1, 2}));
  EXPECT_TRUE(prompt_lookup_candidates({1, 2, 3, 4}, 2, 5, {}).empty());
  EXPECT_TRUE(prompt_lookup_candidates({7}, 2, 5, {}).empty());
  // Never past the end of the sequence.
  EXPECT_EQ(prompt_lookup_candidates({9, 1, 9}, 1, 5, {}), (std::vector<int>{1, 9}));
}

TEST(PromptLookup, CandidatesStopBeforeEos) {
  std::vector<int> ids = {5, 6, 2, 7, 5};
  EXPECT_EQ(prompt_lookup_candidates(ids, 2, 4, {2}), (std::vector<int>{6}));
  EXPECT_TRUE(prompt_lookup_candidates({5, 2, 7, 5}, 2, 4, {2}).empty());  // transformers: a plain step
}

TEST(Acceptance, MatchKeepsTheLeadingAgreement) {
  auto v = speculative::match_candidates(mx::array({4, 5, 6}), mx::array({4, 5, 9, 1}));
  mx::eval(v.accepted, v.tokens);
  EXPECT_EQ(v.accepted.item<int32_t>(), 2);
  EXPECT_EQ(v.tokens.data<int32_t>()[2], 9);
  auto all = speculative::match_candidates(mx::array({4, 5}), mx::array({4, 5, 8}));
  EXPECT_EQ(all.accepted.item<int32_t>(), 2);
  auto none = speculative::match_candidates(mx::zeros({0}, mx::int32), mx::array({3}));
  EXPECT_EQ(none.accepted.item<int32_t>(), 0);
}

// One candidate drawn from q, verified against p: the emitted token must follow p.
TEST(Acceptance, RejectionSamplingEmitsTheTargetDistribution) {
  const std::vector<float> p = {0.5f, 0.3f, 0.15f, 0.05f};
  const std::vector<float> q = {0.1f, 0.2f, 0.3f, 0.4f};
  auto lp = mx::log(mx::array(p.data(), {1, 4}));
  auto lq = mx::log(mx::array(q.data(), {1, 4}));
  auto target = mx::concatenate({lp, lp}, 0);  // position 0 and the bonus position
  const int n = 1500;                          // the draft alone (q) or p without the residual would be many sigmas off
  // n independent verdicts, evaluated as one graph.
  std::vector<mx::array> emitted;
  auto keys = mx::random::split(mx::random::key(7), n);
  for (int i = 0; i < n; ++i) {
    auto key = mx::reshape(mx::slice(keys, {i, 0}, {i + 1, 2}), {2});
    auto ks = mx::random::split(key);
    auto c = mx::astype(mx::random::categorical(lq, -1, ks.first), mx::int32);
    auto v = speculative::rejection_sample(c, target, lq, ks.second);
    emitted.push_back(mx::where(mx::equal(v.accepted, mx::array(1)), mx::reshape(c, {}),
                                mx::reshape(mx::slice(v.tokens, {0}, {1}), {})));
  }
  auto all = mx::stack(emitted);
  mx::eval(all);
  std::map<int, int> counts;
  for (int i = 0; i < n; ++i) counts[all.data<int32_t>()[i]]++;
  for (int t = 0; t < 4; ++t) {
    double f = double(counts[t]) / n, sd = std::sqrt(p[t] * (1 - p[t]) / n);
    EXPECT_NEAR(f, p[t], 4.5 * sd) << "token " << t;
  }
}

GenerationConfig greedy(int max_new) {
  GenerationConfig c;
  c.max_new_tokens = max_new;
  return c;
}

TEST(Speculative, GreedyOutputIsPlainGreedyWithAnyDraft) {
  FakeModel target(16, 1024);
  auto plain = generate(target, nullptr, {3}, greedy(20)).sequences[0].token_ids;
  for (bool uniform : {false, true}) {  // a perfect draft, and one that is always wrong
    auto draft = std::make_shared<FakeModel>(16, 1024, uniform);
    auto c = greedy(20);
    c.use_speculative = true;
    c.draft_layers = 1;  // satisfies validation; the draft object passed in is used
    c.num_draft_tokens = 4;
    auto r = speculative_generate(target, nullptr, {3}, c, {}, {}, draft);
    EXPECT_EQ(r.sequences[0].token_ids, plain);
    ASSERT_TRUE(r.stats.speculative);
    const auto& s = *r.stats.speculative;
    EXPECT_EQ(s.emitted_tokens, 20);
    if (!uniform) {
      EXPECT_EQ(s.accepted_tokens, s.drafted_tokens);
      EXPECT_EQ(s.target_forwards, 4);  // 5 tokens per forward
    } else {
      EXPECT_LT(s.accepted_tokens, 3);  // only where the true next token happens to be the draft's 0
    }
    EXPECT_EQ(s.emitted_tokens, s.accepted_tokens + s.target_forwards);
    EXPECT_EQ(r.sequences[0].finish_reason, FinishReason::Length);
  }
}

TEST(Speculative, StopsAtEosInsideAnAcceptedRun) {
  FakeModel target(16, 1024);
  auto draft = std::make_shared<FakeModel>(16, 1024);
  auto c = greedy(30);
  c.eos_token_id = std::vector<int>{9};
  auto plain = generate(target, nullptr, {3}, c).sequences[0];
  c.use_speculative = true;
  c.draft_layers = 1;
  c.num_draft_tokens = 4;
  auto r = speculative_generate(target, nullptr, {3}, c, {}, {}, draft).sequences[0];
  EXPECT_EQ(r.token_ids, plain.token_ids);
  EXPECT_EQ(r.token_ids.back(), 9);
  EXPECT_EQ(r.finish_reason, FinishReason::Eos);
}

TEST(Speculative, PromptLookupGreedyIsPlainGreedy) {
  FakeModel target(8, 1024);  // 3 4 5 6 7 0 1 2 3 ...: the sequence repeats, so lookups hit
  auto c = greedy(25);
  auto plain = generate(target, nullptr, {3, 4}, c).sequences[0].token_ids;
  c.prompt_lookup_num_tokens = 5;
  auto r = generate(target, nullptr, {3, 4}, c);
  EXPECT_EQ(r.sequences[0].token_ids, plain);
  ASSERT_TRUE(r.stats.speculative);
  EXPECT_GT(r.stats.speculative->accepted_tokens, 10);
  EXPECT_LT(r.stats.speculative->target_forwards, 25);
}

TEST(Speculative, ClearErrors) {
  FakeModel target(16, 1024);
  auto c = greedy(10);
  c.use_speculative = true;
  c.draft_layers = 1;
  auto other_vocab = std::make_shared<FakeModel>(32, 1024);
  EXPECT_NE(error_of([&] {
              speculative_generate(target, nullptr, {3}, c, {}, {}, other_vocab);
            }).find("[config] the draft model's vocabulary"),
            std::string::npos);
  auto draft = std::make_shared<FakeModel>(16, 1024);
  auto g = c;
  g.guidance_scale = 1.5;
  EXPECT_NE(error_of([&] { speculative_generate(target, nullptr, {3}, g, {}, {}, draft); }).find("[config] guidance"),
            std::string::npos);
  auto rot = c;
  rot.max_kv_size = 8;
  rot.kv_keep = 0;
  EXPECT_NE(error_of([&] {
              speculative_generate(target, nullptr, {3}, rot, {}, {}, draft);
            }).find("[generate] speculative decoding needs KV caches that can roll back"),
            std::string::npos);
  // A window the prompt and budget do not fit is refused up front whatever the candidate count (a round
  // drafts at most the tokens left): INT_MAX candidates overflowed the check, and the run failed after
  // streaming tokens.
  for (int k : {3, std::numeric_limits<int>::max()}) {
    auto small = rot;
    small.max_kv_size = 10;  // prompt 1 + budget 10
    small.num_draft_tokens = k;
    EXPECT_NE(error_of([&] {
                speculative_generate(target, nullptr, {3}, small, {}, {}, draft);
              }).find("this run may need 11 positions (prompt + budget)"),
              std::string::npos)
        << k;
  }
  // Memory traces are recorded by plain decoding only: refused, not silently left out.
  GeneratorOptions traced;
  traced.memory_trace_at = {2};
  EXPECT_NE(error_of([&] { speculative_generate(target, nullptr, {3}, c, {}, traced, draft); }).find("memory traces"),
            std::string::npos);
}

}  // namespace
}  // namespace mlxgp
