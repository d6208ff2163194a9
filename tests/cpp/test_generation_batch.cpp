// The Generator beyond one greedy row: num_return_sequences (batched rows that finish on their own),
// per-step outputs (scores, logits, logprobs), the custom stopping callback and user logits processors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <mlx/mlx.h>

#include "mlxgp/generate.h"
#include "test_generation_fake.h"
#include "test_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using mlxgp::testing::error_of;
using mlxgp::testing::FakeModel;
using mlxgp::testing::to_vec;

namespace {

GenerationConfig sampling(int n, int max_new, uint64_t seed) {
  GenerationConfig c;
  c.do_sample = true;
  c.top_k = 0;
  c.num_return_sequences = n;
  c.max_new_tokens = max_new;
  c.seed = seed;
  return c;
}

std::vector<std::vector<int>> run_rows(Model& m, const GenerationConfig& c, std::vector<FinishReason>* why = nullptr) {
  Generator g(m, c);
  g.prefill({1, 2});
  while (!g.done()) g.step_batch();
  std::vector<std::vector<int>> rows;
  for (int r = 0; r < g.num_sequences(); ++r) {
    rows.push_back(g.generated(r));
    if (why) why->push_back(g.finish_reason(r));
  }
  return rows;
}

// Records the logits it is given (to check where user processors sit in the pipeline) and adds `boost`
// to one token.
class Recorder : public LogitsProcessor {
 public:
  Recorder(int token, float boost, std::shared_ptr<std::vector<float>> seen)
      : token_(token), boost_(boost), seen_(seen) {}
  mx::array apply(const mx::array& logits, const mx::array&) override {
    if (seen_->empty()) *seen_ = mlxgp::testing::to_vec(logits);
    auto bump = mx::multiply(mx::astype(mx::equal(mx::arange(logits.shape(1)), mx::array(token_)), mx::float32),
                             mx::array(boost_));
    return mx::add(logits, bump);
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<Recorder>(*this); }

 private:
  int token_;
  float boost_;
  std::shared_ptr<std::vector<float>> seen_;
};

}  // namespace

TEST(Batch, SeveralSequencesAreReproducibleAndDiffer) {
  FakeModel m(1000, 10000, /*uniform=*/true);
  auto c = sampling(3, 10, 5);
  auto a = run_rows(m, c), b = run_rows(m, c);
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a[0], a[1]);
  EXPECT_NE(a[1], a[2]);
  for (auto& row : a) EXPECT_EQ(row.size(), 10u);
  c.seed = 6;
  EXPECT_NE(run_rows(m, c), a);
  // step() is for one row.
  Generator g(m, c);
  g.prefill({1});
  EXPECT_EQ(error_of([&] { g.step(); }),
            "[generate] step() returns one token: use step_batch() with num_return_sequences > 1");
}

TEST(Batch, RowsFinishOnTheirOwn) {
  // Uniform over 4 tokens with EOS = 0: each row ends at its own first 0 (kept), or at the budget.
  FakeModel m(4, 10000, /*uniform=*/true);
  auto c = sampling(6, 12, 21);
  c.eos_token_id = std::vector<int>{0};
  std::vector<FinishReason> why;
  auto rows = run_rows(m, c, &why);
  std::set<size_t> lengths;
  for (size_t r = 0; r < rows.size(); ++r) {
    lengths.insert(rows[r].size());
    auto first_eos = std::find(rows[r].begin(), rows[r].end(), 0);
    if (why[r] == FinishReason::Eos) {
      EXPECT_EQ(first_eos, rows[r].end() - 1) << r;
    } else {
      EXPECT_EQ(why[r], FinishReason::Length) << r;
      EXPECT_EQ(rows[r].size(), 12u) << r;
      EXPECT_EQ(first_eos, rows[r].end()) << r;
    }
  }
  EXPECT_GT(lengths.size(), 1u) << "every row stopped at the same step";
  // step_batch() reports -1 for rows already finished.
  Generator g(m, c);
  g.prefill({1, 2});
  bool saw_finished_row = false;
  while (!g.done()) {
    std::vector<bool> was_done;
    for (int r = 0; r < g.num_sequences(); ++r) was_done.push_back(g.finish_reason(r) != FinishReason::None);
    const auto& tokens = g.step_batch();
    for (int r = 0; r < g.num_sequences(); ++r) {
      EXPECT_EQ(tokens[r] < 0, was_done[r]);
      saw_finished_row = saw_finished_row || was_done[r];
    }
  }
  EXPECT_TRUE(saw_finished_row);
}

TEST(Batch, GenerateReturnsEverySequenceWithStats) {
  FakeModel m(50, 10000, /*uniform=*/true);
  int streamed = 0;
  auto r = generate(m, nullptr, {1, 2, 3}, sampling(3, 5, 9), [&](int, const std::string&) { ++streamed; });
  ASSERT_EQ(r.sequences.size(), 3u);
  EXPECT_EQ(streamed, 5);  // the callback follows the first sequence
  EXPECT_EQ(r.stats.generated_tokens, 15);
  for (auto& s : r.sequences) {
    EXPECT_EQ(s.token_ids.size(), 5u);
    EXPECT_EQ(s.finish_reason, FinishReason::Length);
    EXPECT_FALSE(s.scores || s.logits);
    EXPECT_TRUE(s.logprobs.empty() && s.token_scores.empty());
  }
}

TEST(Outputs, ScoresLogitsAndLogprobs) {
  // Fixed logits log(0.1 .. 0.4); with temperature 0.5 and top_k 2 the processed scores are
  // 2 log p for tokens 2, 3 and -inf for 0, 1; the logprob of the chosen token is log_softmax of that.
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> logp = {std::log(0.1f), std::log(0.2f), std::log(0.3f), std::log(0.4f)};
  FakeModel m(logp, 1000);
  auto c = sampling(2, 4, 3);
  c.temperature = 0.5;
  c.top_k = 2;
  c.output_scores = c.output_logits = c.output_logprobs = true;
  c.eos_token_id = std::vector<int>{};
  auto r = generate(m, nullptr, {0}, c);
  ASSERT_EQ(r.sequences.size(), 2u);
  const double z = std::log(0.3 * 0.3 + 0.4 * 0.4);
  for (auto& s : r.sequences) {
    ASSERT_TRUE(s.scores && s.logits);
    EXPECT_EQ(s.scores->shape(), (mx::Shape{4, 4}));
    auto scores = to_vec(*s.scores), logits = to_vec(*s.logits);
    ASSERT_EQ(s.logprobs.size(), 4u);
    for (int t = 0; t < 4; ++t) {
      EXPECT_EQ(scores[4 * t], -inf);
      EXPECT_EQ(scores[4 * t + 1], -inf);
      EXPECT_NEAR(scores[4 * t + 3], 2 * logp[3], 1e-5);
      EXPECT_NEAR(logits[4 * t + 2], logp[2], 1e-6);
      const int tok = s.token_ids[t];
      ASSERT_TRUE(tok == 2 || tok == 3);
      EXPECT_NEAR(s.token_scores[t], 2 * logp[tok], 1e-5);
      EXPECT_NEAR(s.token_logits[t], logp[tok], 1e-6);
      EXPECT_NEAR(s.logprobs[t], 2 * std::log(tok == 2 ? 0.3 : 0.4) - z, 1e-5);
    }
  }
}

TEST(Outputs, StopAtEosTrimsTheQueuedStep) {
  // The step after the last token was already queued when it was read; its outputs are dropped.
  FakeModel m(16, 1000);
  GenerationConfig c;
  c.max_new_tokens = 10;
  c.eos_token_id = std::vector<int>{6};
  c.output_scores = c.output_logprobs = true;
  Generator g(m, c);
  g.prefill({3});
  while (!g.done()) g.step();
  EXPECT_EQ(g.generated(), (std::vector<int>{4, 5, 6}));
  EXPECT_EQ(g.scores()->shape(), (mx::Shape{3, 16}));
  EXPECT_EQ(g.logprobs().size(), 3u);
  EXPECT_FALSE(g.logits());
}

TEST(Callbacks, StopCallbackSeesPromptAndTokens) {
  FakeModel m(100, 1000);
  GeneratorOptions o;
  std::vector<std::vector<int>> seen;
  o.stop_callback = [&](std::span<const int> ids) {
    seen.emplace_back(ids.begin(), ids.end());
    return ids.back() == 13;
  };
  GenerationConfig c;
  c.max_new_tokens = 20;
  Generator g(m, c, o);
  g.prefill({7, 10});
  while (!g.done()) g.step();
  EXPECT_EQ(g.generated(), (std::vector<int>{11, 12, 13}));
  EXPECT_EQ(g.finish_reason(), FinishReason::StopCallback);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], (std::vector<int>{7, 10, 11}));
  EXPECT_EQ(seen[2], (std::vector<int>{7, 10, 11, 12, 13}));
}

TEST(Callbacks, UserProcessorsRunBeforeTheWarpers) {
  // transformers 5.x merges a custom LogitsProcessorList before temperature/top_k: the processor sees
  // unscaled logits, and its boost is then scaled like the rest.
  std::vector<float> logp = {std::log(0.1f), std::log(0.2f), std::log(0.3f), std::log(0.4f)};
  FakeModel m(logp, 1000);
  auto seen = std::make_shared<std::vector<float>>();
  GeneratorOptions o;
  o.logits_processors.push_back(std::make_shared<Recorder>(0, 100.0f, seen));
  auto c = sampling(1, 3, 1);
  c.temperature = 0.5;
  c.top_k = 1;
  c.output_scores = true;
  c.eos_token_id = std::vector<int>{};
  auto r = generate(m, nullptr, {2}, c, {}, o);
  ASSERT_EQ(seen->size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR((*seen)[i], logp[i], 1e-6);
  EXPECT_EQ(r.sequences[0].token_ids, (std::vector<int>{0, 0, 0}));  // the boost wins, top_k keeps it
  EXPECT_NEAR(r.sequences[0].token_scores[0], 2 * (logp[0] + 100.0f), 1e-3);
}

TEST(Callbacks, StopStringsNeedATokenizerAndNegativePromptsAreChecked) {
  FakeModel m(16, 1000);
  GenerationConfig c;
  c.stop_strings = std::vector<std::string>{"x"};
  EXPECT_EQ(error_of([&] { Generator g(m, c); }), "[generate] stop_strings need the model's tokenizer");
  GeneratorOptions o;
  o.negative_prompt_ids = std::vector<int>{3, 16};
  EXPECT_EQ(error_of([&] { Generator g(m, GenerationConfig{}, o); }),
            "[generate] negative prompt token id 16 is outside the vocabulary (size 16)");
  o.negative_prompt_ids = std::vector<int>{};
  EXPECT_EQ(error_of([&] { Generator g(m, GenerationConfig{}, o); }), "[generate] the negative prompt is empty");
}
