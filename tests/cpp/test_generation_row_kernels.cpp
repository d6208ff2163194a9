// The CPU row kernels (LogitsProcessor::row_kernel) against the same processors' device-op apply():
// every built-in processor that has one, on random logits with ties and -inf, several rows, and ids
// with repeats (the transformers reference itself is checked in tests/parity/test_processors_parity.py,
// through both paths).
#include <cmath>
#include <functional>
#include <random>

#include <gtest/gtest.h>
#include <mlx/mlx.h>

#include "mlxgp/logits_processor.h"
#include "test_util.h"

namespace mx = mlx::core;

namespace mlxgp {
namespace {

using testing::error_of;
using testing::to_vec;

constexpr int kRows = 3, kVocab = 40;

struct Input {
  mx::array logits = mx::array(0.0f);
  mx::array ids = mx::array(0);
};

Input make_input(int t, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::uniform_int_distribution<int> token(0, 11);  // few distinct ids: repeats and n-gram matches
  std::vector<float> x(kRows * kVocab);
  for (auto& f : x) f = std::round(normal(rng) * 2.0f) / 2.0f;  // coarse values: ties
  for (int r = 0; r < kRows; ++r) x[r * kVocab + 3 * r + 1] = -INFINITY;
  std::vector<int> id(kRows * t);
  for (auto& i : id) i = token(rng);
  return {mx::array(x.data(), {kRows, kVocab}, mx::float32), mx::array(id.data(), {kRows, t}, mx::int32)};
}

void expect_same(const std::vector<float>& dev, const std::vector<float>& row, const std::string& what) {
  ASSERT_EQ(dev.size(), row.size()) << what;
  for (size_t i = 0; i < dev.size(); ++i) {
    if (std::isnan(dev[i]) || std::isinf(dev[i])) {
      EXPECT_TRUE(std::isnan(dev[i]) ? std::isnan(row[i]) : dev[i] == row[i]) << what << " at " << i;
    } else {
      EXPECT_NEAR(dev[i], row[i], 1e-5f * std::max(1.0f, std::fabs(dev[i]))) << what << " at " << i;
    }
  }
}

// Runs `make()` both ways on the same input: apply() (device ops) and row_kernel() over each row.
void check(const std::string& what, const std::function<std::unique_ptr<LogitsProcessor>()>& make, int t = 9,
           int prompt_len = 4) {
  for (unsigned seed : {1u, 2u, 3u}) {
    auto in = make_input(t, seed);
    auto prompt = mx::slice(in.ids, {0, 0}, {kRows, prompt_len});
    auto dev_p = make();
    dev_p->on_prompt(prompt);
    auto dev = to_vec(dev_p->apply(in.logits, in.ids));
    auto row_p = make();
    row_p->on_prompt(prompt);
    auto kernel = row_p->row_kernel(kVocab, t);
    ASSERT_TRUE(kernel.has_value()) << what << " has no row kernel";
    auto host = to_vec(in.logits);
    auto ids_f = to_vec(mx::astype(in.ids, mx::float32));
    std::vector<int32_t> ids(ids_f.begin(), ids_f.end());
    if (*kernel)
      for (int r = 0; r < kRows; ++r)
        (*kernel)(std::span<float>(host.data() + r * kVocab, kVocab), std::span<const int32_t>(ids.data() + r * t, t));
    expect_same(dev, host, what + " seed " + std::to_string(seed));
  }
}

const std::vector<int> kEos = {2, 5};

TEST(RowKernels, Warpers) {
  check("temperature", [] { return make_temperature_warper(0.7); });
  for (int keep : {1, 3}) {
    const std::string k = " keep " + std::to_string(keep);
    check("top_k" + k, [keep] { return make_top_k_warper(5, keep); });
    check("top_p" + k, [keep] { return make_top_p_warper(0.8, keep); });
    check("top_p small" + k, [keep] { return make_top_p_warper(0.05, keep); });
    check("min_p" + k, [keep] { return make_min_p_warper(0.1, keep); });
    check("typical" + k, [keep] { return make_typical_warper(0.7, keep); });
    check("epsilon" + k, [keep] { return make_epsilon_warper(0.02, keep); });
    check("eta" + k, [keep] { return make_eta_warper(0.02, keep); });
  }
  check("renormalize", [] { return make_renormalize(); });
  check("remove_invalid_values", [] { return make_remove_invalid_values(); });
}

TEST(RowKernels, Processors) {
  check("repetition_penalty", [] { return make_repetition_penalty(1.3); });
  check("no_repeat_ngram 2", [] { return make_no_repeat_ngram(2); });
  check("no_repeat_ngram 3", [] { return make_no_repeat_ngram(3); });
  check("sequence_bias",
        [] { return make_sequence_bias({{{3}, 1.5}, {{1, 2}, -2.0}, {{4, 4}, 0.5}, {{7, 3}, 0.25}}); });
  check("bad_words", [] { return make_bad_words({{7}, {1, 3}, {2}}, kEos); });
  check("exponential_decay", [] { return make_exponential_decay(1, 1.5, kEos); });
  check("min_length", [] { return make_min_length(20, std::nullopt, kEos); });
  check("min_new_tokens", [] { return make_min_new_tokens(7, kEos); });
  check("suppress_tokens", [] { return make_suppress_tokens({1, 9, 99}); });
  check("begin_suppress_tokens", [] { return make_begin_suppress_tokens({1, 6}, false); }, 4, 4);
  check("forced_bos", [] { return make_forced_bos(3); }, 1, 1);
  check("forced_eos", [] { return make_forced_eos(10, std::nullopt, kEos); }, 9, 4);
  check("presence_frequency", [] { return make_presence_frequency_penalty(0.5, 0.3); });
  check("logit_bias", [] { return make_logit_bias({{3, -1.0}, {6, 2.0}, {3, 0.5}}); });
}

TEST(RowKernels, LlamaCppSamplers) {  // their rules: test_generation_samplers.cpp
  check("dry", [] { return make_dry_penalty(0.8, 1.75, 2, -1, {}, nullptr); }, 40);
  check("dry last_n 12", [] { return make_dry_penalty(1.0, 1.1, 1, 12, {}, nullptr); }, 40);
  check("dry allowed_length 0", [] { return make_dry_penalty(0.5, 2.0, 0, -1, {}, nullptr); }, 40);
  check("top_n_sigma 1", [] { return make_top_n_sigma_warper(1.0); });
  check("top_n_sigma 0.3", [] { return make_top_n_sigma_warper(0.3); });
  check("xtc always", [] { return make_xtc_warper(1.0, 0.05, 1.0, 7); });
  check("xtc half, temperature", [] { return make_xtc_warper(0.5, 0.02, 0.7, 11); });
  check("xtc threshold 0", [] { return make_xtc_warper(1.0, 0.0, 1.0, 3); });
}

TEST(RowKernels, OutOfVocabularyIdsFailAtBuildTime) {
  auto p = make_logit_bias({{kVocab, 1.0}});
  EXPECT_EQ(error_of([&] { p->row_kernel(kVocab, 1); }),
            "[generate] logit_bias token id 40 is outside the vocabulary (size 40)");
  auto s = make_sequence_bias({{{kVocab + 1}, 1.0}});
  EXPECT_EQ(error_of([&] { s->row_kernel(kVocab, 1); }),
            "[generate] sequence_bias token id 41 is outside the vocabulary (size 40)");
}

// A request's processors are checked against the vocabulary when it is admitted (the batch engine
// refuses it then, not in a step other requests share), with the messages their steps give.
TEST(RowKernels, CheckVocabularyNamesTheSetting) {
  LogitsProcessorList list;
  list.add(make_bad_words({{1, kVocab + 2}}, {}));
  EXPECT_EQ(error_of([&] { list.check_vocabulary(kVocab); }),
            "[generate] bad_words_ids token id 42 is outside the vocabulary (size 40)");
  EXPECT_EQ(error_of([&] { make_logit_bias({{kVocab, 1.0}})->check_vocabulary(kVocab); }),
            "[generate] logit_bias token id 40 is outside the vocabulary (size 40)");
  EXPECT_EQ(error_of([&] { make_forced_bos(kVocab)->check_vocabulary(kVocab); }),
            "[generate] forced_bos_token_id 40 is outside the vocabulary (size 40)");
  EXPECT_NO_THROW(make_logit_bias({{kVocab - 1, 1.0}})->check_vocabulary(kVocab));
}

}  // namespace
}  // namespace mlxgp
