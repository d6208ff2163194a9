// Logits processors on small hand-computed cases (transformers' semantics worked out by hand).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/logits_processor.h"
#include "test_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using mlxgp::testing::ids;
using mlxgp::testing::scores;
using mlxgp::testing::to_vec;

namespace {

const float kInf = std::numeric_limits<float>::infinity();

}  // namespace

TEST(Processors, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  auto p = make_repetition_penalty(2.0);
  // Token 1 (4 -> 2) and token 2 (-1 -> -2) occur; 2 occurs twice but is penalised once.
  auto out = to_vec(p->apply(scores({1, 4, -1, 3}), ids({2, 1, 2})));
  EXPECT_EQ(out, (std::vector<float>{1, 2, -2, 3}));
}

TEST(Processors, RepetitionPenaltyPerRow) {
  auto p = make_repetition_penalty(2.0);
  auto out = to_vec(p->apply(scores({2, 2, 2, 2}, 2), ids({0, 0, 1, 1}, 2)));
  EXPECT_EQ(out, (std::vector<float>{1, 2, 2, 1}));
}

TEST(Processors, NoRepeatNGramBansTheTokenThatWouldRepeatABigram) {
  auto p = make_no_repeat_ngram(2);
  // Sequence 0 1 2 0: the last token 0 was followed by 1 before, so 1 is banned.
  auto out = to_vec(p->apply(scores({0, 0, 0, 0}), ids({0, 1, 2, 0})));
  EXPECT_EQ(out, (std::vector<float>{0, -kInf, 0, 0}));
  // Shorter than the n-gram: nothing banned.
  EXPECT_EQ(to_vec(make_no_repeat_ngram(5)->apply(scores({0, 0, 0, 0}), ids({0, 1, 2, 0}))),
            (std::vector<float>{0, 0, 0, 0}));
}

TEST(Processors, MinNewTokensBansEosUntilEnoughNewTokens) {
  auto p = make_min_new_tokens(2, {3});
  p->on_prompt(ids({5, 5}));
  EXPECT_EQ(to_vec(p->apply(scores({1, 1, 1, 1}), ids({5, 5, 1})))[3], -kInf);    // 1 new token
  EXPECT_EQ(to_vec(p->apply(scores({1, 1, 1, 1}), ids({5, 5, 1, 2})))[3], 1.0f);  // 2 new tokens
}

TEST(Processors, SuppressTokensIgnoresIdsOutsideTheVocabulary) {
  auto out = to_vec(make_suppress_tokens({1, 99})->apply(scores({1, 2, 3}), mx::array(0)));
  EXPECT_EQ(out, (std::vector<float>{1, -kInf, 3}));
}

TEST(Processors, ForcedEosOnTheLastStep) {
  auto p = make_forced_eos(/*max_length=*/0, /*max_new_tokens=*/2, {1});
  p->on_prompt(ids({7, 7, 7}));
  EXPECT_EQ(to_vec(p->apply(scores({5, 1, 2}), ids({7, 7, 7}))), (std::vector<float>{5, 1, 2}));
  EXPECT_EQ(to_vec(p->apply(scores({5, 1, 2}), ids({7, 7, 7, 0}))), (std::vector<float>{-kInf, 0, -kInf}));
}

TEST(Processors, ForcedBosOutsideVocabularyIsAnError) {
  auto p = make_forced_bos(10);
  EXPECT_THROW(p->apply(scores({1, 2, 3}), ids({0})), Error);
}

TEST(Processors, MinPKeepsTokensAboveTheScaledTopProbability) {
  // probs of logits log(0.5), log(0.3), log(0.15), log(0.05); min_p 0.2 -> threshold 0.1.
  auto out = to_vec(make_min_p_warper(0.2)->apply(
      scores({std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)}), mx::array(0)));
  EXPECT_TRUE(std::isfinite(out[2]));
  EXPECT_EQ(out[3], -kInf);
}

TEST(Processors, EpsilonCutoffKeepsTheTopTokenEvenBelowEpsilon) {
  // Uniform over 4 tokens (p = 0.25 each) with epsilon 0.5: all are below, only the max survives
  // (ties with the max survive too, as HF compares against the top-1 value).
  auto out = to_vec(make_epsilon_warper(0.5)->apply(scores({0, 0, 0, 0}), mx::array(0)));
  EXPECT_EQ(out, (std::vector<float>{0, 0, 0, 0}));
  auto out2 =
      to_vec(make_epsilon_warper(0.3)->apply(scores({std::log(0.7f), std::log(0.2f), std::log(0.1f)}), mx::array(0)));
  EXPECT_TRUE(std::isfinite(out2[0]));
  EXPECT_EQ(out2[1], -kInf);
  EXPECT_EQ(out2[2], -kInf);
}

TEST(Processors, RemoveInvalidValuesAndRenormalize) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  auto out = to_vec(make_remove_invalid_values()->apply(scores({nan, kInf, -kInf, 1}), mx::array(0)));
  EXPECT_EQ(out, (std::vector<float>{0, std::numeric_limits<float>::max(), std::numeric_limits<float>::lowest(), 1}));
  auto norm = to_vec(make_renormalize()->apply(scores({0, 0}), mx::array(0)));
  EXPECT_NEAR(norm[0], std::log(0.5f), 1e-6);
}

TEST(Processors, PipelineOrderAndNeutralDefaults) {
  GenerationConfig c;
  EXPECT_TRUE(build_logits_processors(c).empty());
  c.repetition_penalty = 2.0;
  c.suppress_tokens = std::vector<int>{0};
  c.renormalize_logits = true;
  auto list = build_logits_processors(c);
  EXPECT_EQ(list.size(), 3u);
  list.on_prompt(ids({1}));
  // penalty (4 -> 2), then suppress token 0, then log-softmax over {2, 2}.
  auto out = to_vec(list.apply(scores({3, 4, 2}), ids({1})));
  EXPECT_EQ(out[0], -kInf);
  EXPECT_NEAR(out[1], std::log(0.5f), 1e-6);
  EXPECT_NEAR(out[2], std::log(0.5f), 1e-6);
}

TEST(Processors, SequenceBiasSingleAndMultiToken) {
  // [2] always gets +1; [0, 3] adds 5 to token 3 only when the ids end with 0; [1, 3] does not match.
  auto p = make_sequence_bias({{{2}, 1.0}, {{0, 3}, 5.0}, {{1, 3}, -7.0}});
  EXPECT_EQ(to_vec(p->apply(scores({0, 0, 0, 0}), ids({1, 0}))), (std::vector<float>{0, 0, 1, 5}));
  // Single-token biases need no ids: the Generator then passes a placeholder.
  auto single = make_sequence_bias({{{1}, -2.0}});
  EXPECT_FALSE(single->needs_ids());
  EXPECT_EQ(to_vec(single->apply(scores({0, 0}), mx::array(0))), (std::vector<float>{0, -2}));
}

TEST(Processors, BadWordsKeepsASingleEosReachable) {
  auto p = make_bad_words({{3}, {1}, {2, 0}}, /*eos=*/{3});
  EXPECT_EQ(to_vec(p->apply(scores({1, 1, 1, 1}), ids({0, 2}))), (std::vector<float>{-kInf, -kInf, 1, 1}));
}

TEST(Processors, ListFieldsFromJsonAndText) {
  GenerationConfig c;
  apply_generation_config_json(c, R"({"bad_words_ids": [[1, 2], [3]], "sequence_bias": [[[4], -1.5]]})",
                               ConfigSource::User);
  EXPECT_EQ(*c.bad_words_ids, (std::vector<std::vector<int>>{{1, 2}, {3}}));
  ASSERT_EQ(c.sequence_bias->size(), 1u);
  EXPECT_EQ((*c.sequence_bias)[0].second, -1.5);
  set_generation_config_field(c, "bad_words_ids", "5;6,7");
  EXPECT_EQ(*c.bad_words_ids, (std::vector<std::vector<int>>{{5}, {6, 7}}));
  set_generation_config_field(c, "sequence_bias", "1,2:0.5;3:-2");
  EXPECT_EQ((*c.sequence_bias)[1].first, std::vector<int>{3});
  EXPECT_THROW(set_generation_config_field(c, "sequence_bias", "1,2"), Error);
  c.exponential_decay_length_penalty = std::vector<double>{2.5, 1.1};
  EXPECT_THROW(validate(c), Error);
}
