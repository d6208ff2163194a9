// llama.cpp's samplers (DRY, top-n-sigma, XTC, mirostat): DRY and XTC on worked examples, mirostat's
// truncation and mu update against the rule restated on the host, and the refusals of validate().
// Row kernels against device ops: test_generation_row_kernels.cpp; llama.cpp itself is the reference
// in tests/parity/test_llama_samplers.py.
#include <cmath>
#include <filesystem>
#include <random>

#include <gtest/gtest.h>
#include <mlx/mlx.h>

#include "generation/core/sampler.h"
#include "mlxgp/generation_config.h"
#include "mlxgp/loader.h"
#include "mlxgp/logits_processor.h"
#include "mlxgp/tokenizer.h"
#include "test_util.h"

namespace mx = mlx::core;

namespace mlxgp {
namespace {

using testing::error_of;
using testing::to_vec;

TEST(LlamaSamplers, DryWorkedExample) {
  // ids 0 1 2 0 1: the suffix "0 1" occurred before, followed by 2; with allowed_length 2 the
  // repeat length 2 gives 2 a penalty of multiplier * base^0.
  auto p = make_dry_penalty(1.0, 1.1, 2, -1, {}, nullptr);
  auto ids = testing::ids({0, 1, 2, 0, 1});
  p->on_prompt(ids);
  auto out = to_vec(p->apply(mx::zeros({1, 4}, mx::float32), ids));
  EXPECT_EQ(out, (std::vector<float>{0, 0, -1, 0}));
  // A longer repeat: "0 1 2 3 | 0 1 2" -> 3 extends a repeat of length 3: 2 * 1.5^(3 - 2).
  auto q = make_dry_penalty(2.0, 1.5, 2, -1, {}, nullptr);
  auto ids2 = testing::ids({0, 1, 2, 3, 0, 1, 2});
  q->on_prompt(ids2);
  out = to_vec(q->apply(mx::zeros({1, 4}, mx::float32), ids2));
  EXPECT_EQ(out, (std::vector<float>{0, 0, 0, -3}));
  // dry_penalty_last_n 4 sees "3 0 1 2" only: no repeat.
  auto r = make_dry_penalty(2.0, 1.5, 2, 4, {}, nullptr);
  r->on_prompt(ids2);
  out = to_vec(r->apply(mx::zeros({1, 4}, mx::float32), ids2));
  EXPECT_EQ(out, (std::vector<float>{0, 0, 0, 0}));
}

TEST(LlamaSamplers, DrySequenceBreakersFromTokenTexts) {
  auto path = std::filesystem::path(MLXGP_CACHE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
  std::shared_ptr<const Tokenizer> tok = load_tokenizer(path.string());
  auto text = tok->encode("Alice: Bob, Alice: Bob, Alice: Bob, Alice:", false);
  auto ids = testing::ids(text);
  const int v = tok->vocab_size();
  auto logits = mx::zeros({1, v}, mx::float32);
  // Without breakers, the token after each earlier "Alice:" (" Bob") extends the repeat.
  auto plain = make_dry_penalty(1.0, 1.75, 2, -1, {}, tok);
  plain->on_prompt(ids);
  auto out = to_vec(plain->apply(logits, ids));
  const int bob = text[2];
  EXPECT_LT(out[bob], -1.0f);
  // ":" ends every repeat: the last token is a breaker, nothing is penalised; the row kernel agrees.
  for (auto breakers : {std::vector<std::string>{":"}, std::vector<std::string>{"\n", ":", "\"", "*"}}) {
    auto dry = make_dry_penalty(1.0, 1.75, 2, -1, breakers, tok);
    dry->on_prompt(ids);
    EXPECT_EQ(to_vec(dry->apply(logits, ids)), std::vector<float>(v, 0.0f));
    std::vector<float> row(v, 0.0f);
    std::vector<int32_t> row_ids(text.begin(), text.end());
    (*dry->row_kernel(v, static_cast<int>(text.size())))(row, row_ids);
    EXPECT_EQ(row, std::vector<float>(v, 0.0f));
  }
  // A multi-token breaker (" Bob," -> " Bob" then ","): the repeat stops after it.
  auto comma = make_dry_penalty(1.0, 1.75, 1, -1, {"b,"}, tok);
  comma->on_prompt(ids);
  out = to_vec(comma->apply(logits, ids));
  std::vector<float> row(v, 0.0f);
  std::vector<int32_t> row_ids(text.begin(), text.end());
  (*comma->row_kernel(v, static_cast<int>(text.size())))(row, row_ids);
  EXPECT_EQ(out, row);
}

TEST(LlamaSamplers, XtcCutsAllButTheLeastLikelyAboveThreshold) {
  // probabilities ~ .5, .3, .15, .05 -> threshold .1 cuts the first two, keeps .15 and .05.
  std::vector<float> p = {0.5f, 0.3f, 0.15f, 0.05f};
  std::vector<float> logits;
  for (float x : p) logits.push_back(std::log(x));
  auto x = make_xtc_warper(1.0, 0.1, 1.0, 1);
  auto out = to_vec(x->apply(testing::scores(logits), mx::array(0)));
  EXPECT_TRUE(std::isinf(out[0]) && std::isinf(out[1]));
  EXPECT_FLOAT_EQ(out[2], logits[2]);
  EXPECT_FLOAT_EQ(out[3], logits[3]);
  // One token above the threshold: nothing to cut.
  auto y = make_xtc_warper(1.0, 0.4, 1.0, 1);
  EXPECT_EQ(to_vec(y->apply(testing::scores(logits), mx::array(0))), logits);
  // Threshold 0 with a token already at -inf: every candidate reaches it, the least likely stays.
  auto masked = logits;
  masked[3] = -INFINITY;
  auto z = make_xtc_warper(1.0, 0.0, 1.0, 1);
  out = to_vec(z->apply(testing::scores(masked), mx::array(0)));
  EXPECT_TRUE(std::isinf(out[0]) && std::isinf(out[1]) && std::isinf(out[3]));
  EXPECT_FLOAT_EQ(out[2], logits[2]);
}

// Mirostat's rules restated on the host for one row: the kept set and the new mu.
struct MirostatStep {
  std::vector<bool> keep;
};

MirostatStep host_mirostat(const std::vector<float>& logits, int version, float mu) {
  const int v = static_cast<int>(logits.size());
  float m = *std::max_element(logits.begin(), logits.end()), sum = 0;
  std::vector<float> p(v);
  for (int i = 0; i < v; ++i) sum += p[i] = std::exp(logits[i] - m);
  for (auto& x : p) x /= sum;
  std::vector<float> sorted = p;
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  MirostatStep s;
  if (version == 2) {
    for (int i = 0; i < v; ++i) s.keep.push_back(-std::log2(p[i]) <= mu || p[i] == sorted[0]);
    return s;
  }
  float tb = 0, tt = 0;
  for (int i = 0; i < std::min(100, v) - 1; ++i) {
    float t = std::log(float(i + 2) / float(i + 1)), b = std::log(sorted[i] / sorted[i + 1]);
    tb += t * b;
    tt += t * t;
  }
  const float s_hat = tb / tt, eps = s_hat - 1;
  const float k = std::pow(eps * std::pow(2.0f, mu) / (1 - std::pow(float(v), -eps)), 1 / s_hat);
  const int ki = std::clamp(static_cast<int>(k), 1, v);
  for (int i = 0; i < v; ++i) s.keep.push_back(p[i] >= sorted[ki - 1]);
  return s;
}

TEST(LlamaSamplers, MirostatTruncationAndMu) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int version : {1, 2}) {
    GenerationConfig c;
    c.do_sample = true;
    c.top_k = 0;
    c.mirostat = version;
    c.mirostat_tau = 3.0;
    c.mirostat_eta = 0.2;
    c.seed = 9;
    validate(c);
    Sampler sampler(c);
    float mu = 6.0f;  // 2 * tau
    int truncated_steps = 0;
    for (int step = 0; step < 12; ++step) {
      std::vector<float> logits(200);
      for (auto& f : logits) f = normal(rng);
      auto scores = testing::scores(logits);
      mx::array from = scores;
      auto token = sampler.choose(scores, &from);
      auto host = host_mirostat(logits, version, mu);
      auto kept = to_vec(from);
      int n_kept = 0;
      for (int i = 0; i < 200; ++i) {
        EXPECT_EQ(!std::isinf(kept[i]), static_cast<bool>(host.keep[i]))
            << "v" << version << " step " << step << " token " << i;
        n_kept += !std::isinf(kept[i]);
      }
      truncated_steps += n_kept < 200;
      const int t = token.item<int32_t>();
      ASSERT_TRUE(host.keep[t]);
      float m = -INFINITY, sum = 0;
      for (int i = 0; i < 200; ++i)
        if (host.keep[i]) m = std::max(m, logits[i]);
      for (int i = 0; i < 200; ++i)
        if (host.keep[i]) sum += std::exp(logits[i] - m);
      mu -= 0.2f * (-std::log2(std::exp(logits[t] - m) / sum) - 3.0f);
      EXPECT_NEAR(to_vec(*sampler.mirostat_mu())[0], mu, 1e-4f) << "v" << version << " step " << step;
    }
    EXPECT_GT(truncated_steps, 0) << "v" << version << " never truncated";
  }
}

TEST(LlamaSamplers, ConfigRefusals) {
  auto with = [](auto set) {
    GenerationConfig c;
    c.do_sample = true;
    set(c);
    return error_of([&] { validate(c); });
  };
  EXPECT_NE(with([](auto& c) { c.mirostat = 2; }).find("cannot be combined with top_k=50 (set top_k=0)"),
            std::string::npos);
  auto accepted = [](auto set) {
    GenerationConfig c;
    c.do_sample = true;
    set(c);
    EXPECT_NO_THROW(validate(c));
  };
  accepted([](auto& c) { c.mirostat = 2, c.top_k = 0; });
  EXPECT_NE(with([](auto& c) { c.mirostat = 1, c.top_k = 0, c.top_p = 0.9; }).find("top_p < 1"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.mirostat = 1, c.top_k = 0, c.do_sample = false; }).find("needs do_sample=true"),
            std::string::npos);
  EXPECT_NE(with([](auto& c) { c.mirostat = 2, c.top_k = 0, c.num_beams = 2; }).find("num_beams"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.mirostat = 2, c.top_k = 0, c.prompt_lookup_num_tokens = 3; }).find("speculative"),
            std::string::npos);
  EXPECT_NE(with([](auto& c) { c.mirostat = 3; }).find("field 'mirostat' must be in [0, 2], got 3"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.xtc_probability = 0.5, c.num_beams = 2; }).find("xtc_probability"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.xtc_probability = 0.5, c.do_sample = false; }).find("needs do_sample"),
            std::string::npos);
  EXPECT_NE(with([](auto& c) { c.xtc_threshold = 0.6; }).find("field 'xtc_threshold' must be in [0, 0.5]"),
            std::string::npos);
  EXPECT_NE(with([](auto& c) { c.top_n_sigma = 1.0, c.do_sample = false; }).find("top_n_sigma"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.top_n_sigma = NAN; }).find("finite"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.dry_base = 0.5; }).find("dry_base"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.dry_penalty_last_n = -2; }).find("dry_penalty_last_n"), std::string::npos);
  EXPECT_NE(with([](auto& c) { c.dry_sequence_breakers = {""}; }).find("empty string"), std::string::npos);
  accepted([](auto& c) { c.dry_multiplier = 0.8, c.num_beams = 2, c.do_sample = false; });  // DRY reads the ids
  EXPECT_NE(with([](auto& c) { c.top_n_sigma = 1.0, c.num_beams = 2; }).find("top_n_sigma"), std::string::npos);
  // JSON: llama.cpp's names and defaults.
  GenerationConfig c;
  EXPECT_EQ(c.dry_sequence_breakers, (std::vector<std::string>{"\n", ":", "\"", "*"}));
  apply_generation_config_json(c, R"({"dry_sequence_breakers": ["ab", "\n"], "mirostat": 2, "top_n_sigma": -1})",
                               ConfigSource::User);
  EXPECT_EQ(c.dry_sequence_breakers, (std::vector<std::string>{"ab", "\n"}));
  EXPECT_EQ(c.mirostat, 2);
}

}  // namespace
}  // namespace mlxgp
