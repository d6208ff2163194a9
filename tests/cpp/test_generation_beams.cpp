// Beam search family through the public API on a fake model whose next-token distribution is the same
// every step (so the best sequences are known by enumeration), plus the constraint states of
// constrained beam search (transformers 4.56 beam_constraints.py semantics).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>

#include <mlx/mlx.h>

#include "../../src/generation/beam/constraints.h"
#include "mlxgp/beam_search.h"
#include "mlxgp/generate.h"
#include "test_generation_fake.h"
#include "test_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using mlxgp::testing::error_of;
using mlxgp::testing::FakeModel;

namespace {

const std::vector<float> kLogits = {0.5f, 2.0f, 1.7f, -1.0f, 1.0f, 0.2f};

std::vector<double> log_softmax(const std::vector<float>& l) {
  double m = *std::max_element(l.begin(), l.end()), s = 0;
  for (float x : l) s += std::exp(x - m);
  std::vector<double> out;
  for (float x : l) out.push_back(x - m - std::log(s));
  return out;
}

GenerationConfig beams(int nb, int nrs, int max_new) {
  GenerationConfig c;
  c.num_beams = nb;
  c.num_return_sequences = nrs;
  c.max_new_tokens = max_new;
  c.eos_token_id = std::vector<int>{};
  return c;
}

}  // namespace

TEST(Beams, ReturnsTheBestSequencesByEnumeration) {
  // With the same distribution every step and no EOS, the top-k sequences of length n all extend
  // top-k prefixes, so beam search with k beams finds exactly the k best of all V^n sequences.
  FakeModel m(kLogits, 64);
  auto lp = log_softmax(kLogits);
  const int v = static_cast<int>(kLogits.size()), n = 3;
  std::vector<std::pair<double, std::vector<int>>> all;
  for (int a = 0; a < v; ++a)
    for (int b = 0; b < v; ++b)
      for (int c = 0; c < v; ++c) all.push_back({lp[a] + lp[b] + lp[c], {a, b, c}});
  std::sort(all.begin(), all.end(), [](auto& x, auto& y) { return x.first > y.first; });
  auto r = generate(m, nullptr, {1, 2}, beams(3, 3, n));
  ASSERT_EQ(r.sequences.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r.sequences[i].token_ids, all[i].second) << i;
    ASSERT_TRUE(r.sequences[i].sequence_score);
    EXPECT_NEAR(*r.sequences[i].sequence_score, all[i].first / n, 1e-5);  // length_penalty 1
    EXPECT_EQ(r.sequences[i].beam_indices.size(), 3u);
    EXPECT_EQ(r.sequences[i].finish_reason, FinishReason::Length);
  }
}

TEST(Beams, EosFinishesHypothesesAndLengthPenaltyRanksThem) {
  // Token 2 is EOS: the one-token hypothesis [2] has the best sum; with length_penalty 0 it wins, with a
  // large positive one the longer ones win.
  FakeModel m(kLogits, 64);
  auto c = beams(2, 2, 4);
  c.eos_token_id = std::vector<int>{2};
  c.length_penalty = 0.0;
  c.early_stopping = EarlyStopping::Never;
  auto r = generate(m, nullptr, {1}, c);
  ASSERT_EQ(r.sequences.size(), 2u);
  EXPECT_EQ(r.sequences[0].token_ids, (std::vector<int>{2}));
  EXPECT_EQ(r.sequences[0].finish_reason, FinishReason::Eos);
  EXPECT_GE(*r.sequences[0].sequence_score, *r.sequences[1].sequence_score);
  c.length_penalty = 4.0;
  auto longer = generate(m, nullptr, {1}, c);
  EXPECT_GT(longer.sequences[0].token_ids.size(), 1u);
}

TEST(Beams, DiverseGroupsDisagree) {
  FakeModel m(kLogits, 64);
  auto c = beams(4, 4, 3);
  c.num_beam_groups = 2;
  c.diversity_penalty = 10.0;  // the second group cannot start with the first group's tokens
  auto r = generate(m, nullptr, {1}, c);
  ASSERT_EQ(r.sequences.size(), 4u);
  std::set<int> first;
  for (auto& s : r.sequences) first.insert(s.token_ids[0]);
  // Without the penalty every hypothesis starts with the best token; with it the second group starts
  // elsewhere.
  EXPECT_GE(first.size(), 2u);
  c.diversity_penalty = 0.0;
  c.num_beam_groups = 1;
  auto plain = generate(m, nullptr, {1}, c);
  std::set<int> plain_first;
  for (auto& s : plain.sequences) plain_first.insert(s.token_ids[0]);
  EXPECT_EQ(plain_first, (std::set<int>{1, 2}));
  EXPECT_TRUE(std::any_of(first.begin(), first.end(), [](int t) { return t != 1 && t != 2; }));
}

TEST(Beams, ForcedWordsAppearInTheReturnedHypothesis) {
  FakeModel m(kLogits, 64);
  const std::vector<int> phrase = {3, 5};
  const auto holds = [&](const std::vector<int>& t) {
    return std::search(t.begin(), t.end(), phrase.begin(), phrase.end()) != t.end() &&
           (std::count(t.begin(), t.end(), 0) || std::count(t.begin(), t.end(), 4));
  };
  auto c = beams(3, 1, 5);
  c.force_words_ids = ForceWords{{{3, 5}}, {{0}, {4}}};  // phrasal [3,5] and "0 or 4"
  auto r = generate(m, nullptr, {1}, c);
  ASSERT_EQ(r.sequences.size(), 1u);
  EXPECT_TRUE(holds(r.sequences[0].token_ids));
  // transformers 4.56 finalize: when fewer running beams meet the constraints than sequences are asked
  // for, every running beam is added, and unconstrained ones may then rank first; one still holds them.
  c.num_return_sequences = 3;
  r = generate(m, nullptr, {1}, c);
  ASSERT_EQ(r.sequences.size(), 3u);
  EXPECT_TRUE(std::any_of(r.sequences.begin(), r.sequences.end(), [&](auto& s) { return holds(s.token_ids); }));
}

TEST(Beams, SamplingIsSeededAndSorted) {
  FakeModel m(kLogits, 64);
  auto c = beams(3, 3, 6);
  c.do_sample = true;
  c.top_k = 0;
  c.seed = 5;
  auto a = generate(m, nullptr, {1}, c), b = generate(m, nullptr, {1}, c);
  for (size_t i = 0; i < a.sequences.size(); ++i) EXPECT_EQ(a.sequences[i].token_ids, b.sequences[i].token_ids);
  for (size_t i = 1; i < a.sequences.size(); ++i)
    EXPECT_GE(*a.sequences[i - 1].sequence_score, *a.sequences[i].sequence_score);
}

TEST(Beams, PerStepOutputsAreTheChosenRows) {
  // The fake model's distribution is the same every step, so each recorded row is log_softmax(kLogits)
  // (constrained beams: plus the beam's running score, as transformers 4.56 records it).
  FakeModel m(kLogits, 64);
  auto lp = log_softmax(kLogits);
  const int v = static_cast<int>(kLogits.size());
  auto standard = beams(3, 3, 4);
  auto group = beams(4, 4, 3);
  group.num_beam_groups = 2;
  group.diversity_penalty = 0.5;
  auto constrained = beams(3, 2, 4);
  constrained.force_words_ids = ForceWords{{{3, 5}}};
  for (auto* c : {&standard, &group, &constrained}) {
    c->output_scores = c->output_logits = c->output_logprobs = true;
    auto r = generate(m, nullptr, {1}, *c);
    ASSERT_EQ(static_cast<int>(r.sequences.size()), c->num_return_sequences);
    for (auto& s : r.sequences) {
      const int n = static_cast<int>(s.token_ids.size());
      ASSERT_TRUE(s.scores && s.logits);
      EXPECT_EQ(s.scores->shape(), (mx::Shape{n, v}));
      EXPECT_EQ(s.logits->shape(), (mx::Shape{n, v}));
      ASSERT_EQ(static_cast<int>(s.token_scores.size()), n);
      ASSERT_EQ(static_cast<int>(s.token_logits.size()), n);
      ASSERT_EQ(static_cast<int>(s.logprobs.size()), n);
      auto idx = mx::array(s.token_ids.data(), {n, 1}, mx::int32);
      auto chosen = mx::take_along_axis(*s.scores, idx, 1);
      auto lse = mx::logsumexp(*s.scores, -1);
      mx::eval(chosen, lse);
      double sum = 0;
      for (int t = 0; t < n; ++t) {
        EXPECT_FLOAT_EQ(chosen.data<float>()[t], s.token_scores[t]) << t;
        EXPECT_FLOAT_EQ(s.token_logits[t], kLogits[s.token_ids[t]]) << t;
        EXPECT_NEAR(s.logprobs[t], s.token_scores[t] - lse.data<float>()[t], 1e-5) << t;
        sum += s.token_scores[t];
      }
      if (c == &standard) {
        for (int t = 0; t < n; ++t) EXPECT_NEAR(s.logprobs[t], lp[s.token_ids[t]], 1e-5);
        EXPECT_NEAR(*s.sequence_score, sum / n, 1e-5);  // length_penalty 1: the tokens' scores summed
      }
      if (c == &group) {
        EXPECT_NEAR(*s.sequence_score, sum / n, 1e-5);  // diversity penalty included
      }
    }
  }
}

TEST(Beams, GuidanceRunsInsideBeams) {
  // Conditional and unconditional distributions are the same on the fake model: guidance changes nothing.
  FakeModel m(kLogits, 64);
  auto c = beams(3, 3, 4);
  auto plain = generate(m, nullptr, {1, 2}, c);
  c.guidance_scale = 2.5;
  auto guided = generate(m, nullptr, {1, 2}, c);
  ASSERT_EQ(guided.sequences.size(), plain.sequences.size());
  for (size_t i = 0; i < plain.sequences.size(); ++i) {
    EXPECT_EQ(guided.sequences[i].token_ids, plain.sequences[i].token_ids);
    EXPECT_NEAR(*guided.sequences[i].sequence_score, *plain.sequences[i].sequence_score, 1e-5);
  }
}

TEST(Beams, BadSettingsAreOneLineErrors) {
  FakeModel m(kLogits, 64);
  auto c = beams(4, 1, 3);
  c.guidance_scale = 2.0;
  c.num_beam_groups = 2;
  EXPECT_NE(error_of([&] { generate(m, nullptr, {1}, c); }).find("[generate]"), std::string::npos);
  c = beams(2, 1, 3);
  c.force_words_ids = ForceWords{{{1, 2}, {1}}};  // an alternative that is a prefix of another
  EXPECT_NE(error_of([&] { generate(m, nullptr, {1}, c); }).find("[generate]"), std::string::npos);
  c = beams(2, 1, 3);
  c.force_words_ids = ForceWords{{{99}}};
  EXPECT_NE(error_of([&] { generate(m, nullptr, {1}, c); }).find("outside the vocabulary"), std::string::npos);
}

TEST(BeamConstraints, BanksFollowTransformersSemantics) {
  using beam::Constraint;
  using beam::ConstraintListState;
  std::vector<Constraint> cs = {Constraint({{5, 6, 7}}), Constraint({{1, 2}, {3}})};
  ConstraintListState s(cs);
  auto adv = s.advance();
  EXPECT_EQ(adv, (std::vector<int>{5, 1, 3}));  // pending constraints in order, trie children in order
  s.reset({9, 5});
  EXPECT_EQ(s.bank(), 3 - 2);  // in progress: max_seqlen - remaining
  EXPECT_EQ(s.advance(), (std::vector<int>{6}));
  s.reset({5, 6, 7, 3});
  EXPECT_TRUE(s.completed());
  EXPECT_EQ(s.bank(), 2 * 3);
  // A token that breaks the in-progress constraint is not tried on the pending ones (transformers).
  s.reset({5, 3});
  EXPECT_FALSE(s.completed());
  EXPECT_EQ(s.bank(), 0);
  s.reset({3, 5, 6});
  EXPECT_EQ(s.bank(), 3 + (3 - 1));  // one complete + [5, 6] of [5, 6, 7]
}

TEST(Beams, SamplingDrawsWithoutReplacementLikeMultinomial) {
  // Beam sampling draws 2 * num_beams continuations without replacement with probabilities
  // softmax(scores) (torch.multinomial(replacement=False) in transformers) and keeps the best drawn.
  // With one new token and 2 beams, the returned token is the most likely of 4 draws from 6 tokens;
  // its exact law comes from enumerating the 360 ordered draws.
  FakeModel m(kLogits, 64);
  auto lp = log_softmax(kLogits);
  const int v = static_cast<int>(kLogits.size());
  std::vector<double> p(v), law(v, 0.0);
  for (int i = 0; i < v; ++i) p[i] = std::exp(lp[i]);
  std::function<void(std::vector<int>&, double)> walk = [&](std::vector<int>& drawn, double prob) {
    if (drawn.size() == 4) {
      int best = drawn[0];
      for (int t : drawn)
        if (lp[t] > lp[best]) best = t;
      law[best] += prob;
      return;
    }
    double left = 1.0;
    for (int t : drawn) left -= p[t];
    for (int t = 0; t < v; ++t) {
      if (std::find(drawn.begin(), drawn.end(), t) != drawn.end()) continue;
      drawn.push_back(t);
      walk(drawn, prob * p[t] / left);
      drawn.pop_back();
    }
  };
  std::vector<int> drawn;
  walk(drawn, 1.0);
  auto c = beams(2, 1, 1);
  c.do_sample = true;
  c.top_k = 0;
  const int n = 3000;
  std::vector<int> counts(v, 0);
  for (int s = 0; s < n; ++s) {
    c.seed = static_cast<uint64_t>(s);
    ++counts[generate(m, nullptr, {1}, c).sequences[0].token_ids[0]];
  }
  for (int t = 0; t < v; ++t) {
    const double sd = std::sqrt(law[t] * (1 - law[t]) / n);
    EXPECT_NEAR(counts[t] / double(n), law[t], 5 * sd + 1e-3) << "token " << t;
  }
}
