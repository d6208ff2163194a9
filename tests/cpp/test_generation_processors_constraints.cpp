// The non-HF processors (presence/frequency penalty, logit_bias, force_words_ids) and the user
// callbacks, on small cases worked out by hand from the documented semantics.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/logits_processor.h"
#include "test_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using mlxgp::testing::error_of;
using mlxgp::testing::ids;
using mlxgp::testing::scores;
using mlxgp::testing::to_vec;

namespace {

const float kInf = std::numeric_limits<float>::infinity();

mx::array tok(std::vector<int> v) { return mx::array(v.data(), {static_cast<int>(v.size())}, mx::int32); }

// The finite entries' indices of a one-row result.
std::vector<int> finite_ids(const mx::array& a) {
  auto v = to_vec(a);
  std::vector<int> out;
  for (size_t i = 0; i < v.size(); ++i)
    if (std::isfinite(v[i])) out.push_back(static_cast<int>(i));
  return out;
}

}  // namespace

TEST(PresenceFrequency, CountsOnlyGeneratedTokens) {
  auto p = make_presence_frequency_penalty(/*presence=*/0.5, /*frequency=*/0.25);
  EXPECT_TRUE(p->needs_ids());
  p->on_prompt(ids({1, 1, 1}));  // the prompt never counts
  EXPECT_EQ(to_vec(p->apply(scores({1, 1, 1, 1}), ids({1, 1, 1}))), (std::vector<float>{1, 1, 1, 1}));
  // token 2: 1 - 0.5 - 2 * 0.25 = 0; token 3: 1 - 0.5 - 0.25 = 0.25.
  EXPECT_EQ(to_vec(p->apply(scores({1, 1, 1, 1}), ids({1, 1, 1, 2, 2, 3}))), (std::vector<float>{1, 1, 0, 0.25f}));
}

TEST(PresenceFrequency, PerRowAndNegativeValuesReward) {
  auto p = make_presence_frequency_penalty(-1.0, 0.0);
  p->on_prompt(ids({0, 0}, 2));
  EXPECT_EQ(to_vec(p->apply(scores({0, 0, 0, 0, 0, 0}, 2), ids({0, 1, 0, 2}, 2))),
            (std::vector<float>{0, 1, 0, 0, 0, 1}));
  // -inf stays -inf.
  EXPECT_EQ(to_vec(p->apply(scores({0, -kInf, 0, 0, 0, 0}, 2), ids({0, 1, 0, 2}, 2)))[1], -kInf);
}

TEST(LogitBias, AddsAndKeepsTheLastDuplicate) {
  auto p = make_logit_bias({{1, 2.0}, {3, -1.0}, {1, 5.0}});
  EXPECT_EQ(to_vec(p->apply(scores({0, 0, 0, 0}), mx::array(0))), (std::vector<float>{0, 5, 0, -1}));
  EXPECT_NE(error_of([&] { p->apply(scores({0, 0, 0}), mx::array(0)); }).find("outside the vocabulary"),
            std::string::npos);
}

TEST(ForceWords, ContinuationIsForcedOnceTheFirstTokenAppears) {
  auto p = make_force_words({{{4, 5, 6}}}, {0}, /*max_new_tokens=*/20, 20);
  p->on_prompt(ids({1}));
  auto flat = scores(std::vector<float>(8, 1.0f));
  // Before: free, except EOS (0) which waits for the word.
  EXPECT_EQ(finite_ids(p->apply(flat, mx::array(0))), (std::vector<int>{1, 2, 3, 4, 5, 6, 7}));
  p->on_token(tok({4}));
  EXPECT_EQ(finite_ids(p->apply(flat, mx::array(0))), (std::vector<int>{5}));
  p->on_token(tok({5}));
  EXPECT_EQ(finite_ids(p->apply(flat, mx::array(0))), (std::vector<int>{6}));
  p->on_token(tok({6}));
  // Met: everything allowed, EOS included.
  EXPECT_EQ(finite_ids(p->apply(flat, mx::array(0))).size(), 8u);
}

TEST(ForceWords, StrictStartWhenTheBudgetOnlyJustFits) {
  // Two words of 2 and 1 tokens, 5 new tokens: after 2 free tokens, 3 are left = 2 + 1 needed.
  auto p = make_force_words({{{4, 5}}, {{7}}}, {0}, 5, 100);
  p->on_prompt(ids({1, 1}));
  auto flat = scores(std::vector<float>(8, 1.0f));
  p->on_token(tok({2}));
  p->on_token(tok({3}));
  EXPECT_EQ(finite_ids(p->apply(flat, mx::array(0))), (std::vector<int>{4, 7}));
  p->on_token(tok({7}));
  // 2 left, word [4, 5] needs 2: only 4 can start.
  EXPECT_EQ(finite_ids(p->apply(flat, mx::array(0))), (std::vector<int>{4}));
  p->on_token(tok({4}));
  EXPECT_EQ(finite_ids(p->apply(flat, mx::array(0))), (std::vector<int>{5}));
}

TEST(ForceWords, StrictStartPicksAlternativesThatStillFit) {
  // One disjunctive constraint: [3, 4, 5] or [6]; 2 tokens left: only [6] fits.
  auto p = make_force_words({{{3, 4, 5}, {6}}}, {0}, 2, 100);
  p->on_prompt(ids({1}));
  auto flat = scores(std::vector<float>(8, 1.0f));
  p->on_token(tok({2}));
  EXPECT_EQ(finite_ids(p->apply(flat, mx::array(0))), (std::vector<int>{6}));
}

TEST(ForceWords, DisjunctiveConstraintIsMetByAnyAlternative) {
  auto p = make_force_words({{{3, 4}, {6}}}, {0}, 20, 100);
  p->on_prompt(ids({1}));
  auto flat = scores(std::vector<float>(8, 1.0f));
  p->on_token(tok({6}));
  EXPECT_EQ(finite_ids(p->apply(flat, mx::array(0))).size(), 8u);  // met: EOS allowed, nothing forced
}

TEST(ForceWords, SharedPrefixKeepsBothContinuations) {
  auto p = make_force_words({{{3, 4}, {3, 5}}}, {0}, 20, 100);
  p->on_prompt(ids({1}));
  p->on_token(tok({3}));
  EXPECT_EQ(finite_ids(p->apply(scores(std::vector<float>(8, 1.0f)), mx::array(0))), (std::vector<int>{4, 5}));
}

TEST(ForceWords, RowsAreIndependentAndBudgetUsesMaxLength) {
  // max_length 6, prompt 3 -> budget 3; one word of 2 tokens: strict start at 2 tokens left.
  auto p = make_force_words({{{4, 5}}}, {0}, std::nullopt, 6);
  p->on_prompt(ids({1, 1, 1, 2, 2, 2}, 2));
  p->on_token(tok({4, 2}));  // row 0 started the word, row 1 did not
  auto out = p->apply(scores(std::vector<float>(16, 1.0f), 2), mx::array(0));
  auto v = to_vec(out);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(std::isfinite(v[i]), i == 5) << "row 0 token " << i;
  for (int i = 0; i < 8; ++i) EXPECT_EQ(std::isfinite(v[8 + i]), i == 4) << "row 1 token " << i;
}

TEST(ForceWords, UnsatisfiableRowGetsZeroOnTheForcedTokens) {
  auto p = make_force_words({{{4, 5}}}, {0}, 20, 100);
  p->on_prompt(ids({1}));
  p->on_token(tok({4}));
  auto s = scores({1, 1, 1, 1, 1, -kInf, 1, 1});  // the forced token was banned upstream
  auto v = to_vec(p->apply(s, mx::array(0)));
  EXPECT_EQ(v[5], 0.0f);
  EXPECT_EQ(finite_ids(p->apply(s, mx::array(0))), (std::vector<int>{5}));
}

TEST(ForceWords, TokenOutsideTheVocabularyIsAnError) {
  auto p = make_force_words({{{40}}}, {0}, 20, 100);
  p->on_prompt(ids({1}));
  EXPECT_NE(error_of([&] { p->apply(scores({0, 0, 0}), mx::array(0)); }).find("outside the vocabulary"),
            std::string::npos);
}

TEST(PrefixAllowedTokens, MasksPerRowWithTheBatchId) {
  std::vector<int> seen;
  auto p = make_prefix_allowed_tokens(
      [&](int batch_id, const std::vector<int>& row) {
        seen.push_back(batch_id);
        return std::vector<int>{row.back(), 0};
      },
      /*rows_per_batch=*/2);
  auto v = to_vec(p->apply(scores(std::vector<float>(16, 2.0f), 4), ids({1, 2, 3, 1}, 4)));
  EXPECT_EQ(seen, (std::vector<int>{0, 0, 1, 1}));
  EXPECT_EQ(v[0], 2.0f);
  EXPECT_EQ(v[1], 2.0f);
  EXPECT_EQ(v[2], -kInf);
  EXPECT_EQ(v[4 + 2], 2.0f);
}

TEST(PrefixAllowedTokens, EmptyListIsAnError) {
  auto p = make_prefix_allowed_tokens([](int, const std::vector<int>&) { return std::vector<int>{}; });
  EXPECT_NE(error_of([&] { p->apply(scores({1, 2}), ids({0})); }).find("empty list"), std::string::npos);
}

TEST(CallbackProcessor, RunsInThePipelineBeforeTheWarpers) {
  GenerationConfig c;
  c.do_sample = true;
  c.top_k = 1;
  ProcessorContext ctx;
  // The callback makes token 2 the best; top_k=1 then keeps only it.
  ctx.logits_processors.push_back(std::shared_ptr<const LogitsProcessor>(make_callback_processor(
      [](const mx::array& logits, const mx::array&) { return mx::add(logits, mx::array({0.0f, 0.0f, 5.0f})); })));
  auto list = build_logits_processors(c, ctx);
  list.on_prompt(ids({0}));
  EXPECT_EQ(finite_ids(list.apply(scores({1, 2, 0}), ids({0}))), (std::vector<int>{2}));
}

TEST(Pipeline, GuidanceScaleNeedsAModel) {
  GenerationConfig c;
  c.guidance_scale = 1.5;
  EXPECT_NE(error_of([&] { build_logits_processors(c); }).find("guidance_scale needs the model"), std::string::npos);
  c.guidance_scale = 1.0;  // HF adds nothing at scale 1
  EXPECT_TRUE(build_logits_processors(c).empty());
}
