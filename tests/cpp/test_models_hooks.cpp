// Hooks on a tiny random llama: each hook is checked against the same computation done by hand with
// the model's own pieces (capture, lm_head, forward_embeddings), so a hook that does nothing or the
// wrong thing fails.
#include <gtest/gtest.h>

#include <mlx/mlx.h>

#include "mlxgp/loader.h"
#include "mlxgp/safetensors_io.h"
#include "mlxgp/steering.h"
#include "test_models_util.h"

namespace mx = mlx::core;

namespace mlxgp::testing {
namespace {

mx::array random_vector(int n, uint64_t seed) { return mx::random::normal({n}, 0.0f, 1.0f, mx::random::key(seed)); }

// RMSNorm with the model's final norm weight, by hand.
mx::array final_norm(Model& m, const mx::array& h) {
  auto w = m.parameters().at("model.norm.weight");
  auto var = mx::mean(mx::square(h), -1, true);
  return mx::multiply(mx::multiply(h, mx::rsqrt(mx::add(var, mx::array(1e-5f)))), w);
}

TEST(Hooks, InjectionAtLastLayerEqualsHeadOfShiftedResidual) {
  TinyModel t;
  auto& m = *t.model;
  const std::vector<int> ids = {3, 9, 27, 5, 11};
  auto capture = std::make_shared<ActivationCaptureHook>(std::vector<int>{1}, ActivationCaptureHook::Reduce::All);
  add_hook(m, capture);
  auto base = logits_of(m, ids);
  auto h = capture->captured(1).at(0);
  m.hooks().clear();
  auto v = random_vector(32, 1);
  add_hook(m, std::make_shared<ResidualInjectionHook>(std::vector<int>{1}, v, 2.5));
  auto steered = logits_of(m, ids);
  auto expected = m.lm_head(final_norm(m, mx::add(h, mx::multiply(v, mx::array(2.5f)))));
  EXPECT_LT(max_abs_diff(steered, expected), 1e-4);
  EXPECT_GT(max_abs_diff(steered, base), 1e-2);  // the vector did change something
}

TEST(Hooks, PromptAndGeneratedPositionsSplitAtPromptLength) {
  TinyModel t;
  auto& m = *t.model;
  const std::vector<int> ids = {3, 9, 27, 5, 11};
  auto base = logits_of(m, ids);
  m.hooks().set_prompt_length(3);
  auto v = random_vector(32, 2);
  int handle = add_hook(m, std::make_shared<ResidualInjectionHook>(std::vector<int>{1}, v, 3.0, HookPositions::Prompt));
  auto prompt_only = logits_of(m, ids);
  m.hooks().remove(handle);
  add_hook(m, std::make_shared<ResidualInjectionHook>(std::vector<int>{1}, v, 3.0, HookPositions::Generated));
  auto generated_only = logits_of(m, ids);
  auto rows = [](const mx::array& a, int b, int e) { return mx::slice(a, {0, b, 0}, {1, e, a.shape(2)}); };
  // At the last layer a row's change cannot spread to other rows.
  EXPECT_GT(max_abs_diff(rows(prompt_only, 0, 3), rows(base, 0, 3)), 1e-2);
  EXPECT_EQ(max_abs_diff(rows(prompt_only, 3, 5), rows(base, 3, 5)), 0.0f);
  EXPECT_EQ(max_abs_diff(rows(generated_only, 0, 3), rows(base, 0, 3)), 0.0f);
  EXPECT_GT(max_abs_diff(rows(generated_only, 3, 5), rows(base, 3, 5)), 1e-2);
}

TEST(Hooks, LogitBiasAddsAlphaTimesHeadOfVector) {
  TinyModel t;
  auto& m = *t.model;
  const std::vector<int> ids = {1, 2, 3};
  auto base = logits_of(m, ids);
  m["_persona_v"] = random_vector(32, 3);
  add_hook(m, std::make_shared<LogitBiasHook>(VectorSource("_persona_v"), -1.5));
  auto biased = logits_of(m, ids);
  auto head_v = m.lm_head(mx::reshape(m.extra_params().get("_persona_v"), {1, 1, 32}));
  EXPECT_LT(max_abs_diff(biased, mx::add(base, mx::multiply(head_v, mx::array(-1.5f)))), 1e-5);
  // Reassigning the parameter takes effect without rebuilding the hook.
  m["_persona_v"] = mx::zeros({32});
  EXPECT_LT(max_abs_diff(logits_of(m, ids), base), 1e-6);
}

TEST(Hooks, SoftPromptEqualsForwardOnPrependedEmbeddings) {
  TinyModel t;
  auto& m = *t.model;
  const std::vector<int> ids = {4, 8, 15};
  auto p = mx::random::normal({2, 32}, 0.0f, 0.3f, mx::random::key(4));
  auto caches = m.make_caches();
  auto tokens = mx::array(ids.data(), {1, 3}, mx::int32);
  auto expected = m.forward_embeddings(mx::concatenate({mx::reshape(p, {1, 2, 32}), m.embed(tokens)}, 1), caches);
  m["_soft"] = p;
  add_hook(m, std::make_shared<SoftPromptHook>(2, "_soft"));
  auto got = logits_of(m, ids);
  ASSERT_EQ(got.shape(1), 5);
  EXPECT_LT(max_abs_diff(got, expected), 1e-5);
}

TEST(Hooks, HooksComposeInInsertionOrder) {
  TinyModel t;
  auto& m = *t.model;
  struct Scale : Hook {
    float s;
    explicit Scale(float scale) : s(scale) {}
    bool wants(HookPoint p, int) const override { return p == HookPoint::Logits; }
    mx::array apply(const HookSite&, const mx::array& x, Model&) override { return mx::multiply(x, mx::array(s)); }
  };
  struct Shift : Hook {
    bool wants(HookPoint p, int) const override { return p == HookPoint::Logits; }
    mx::array apply(const HookSite&, const mx::array& x, Model&) override { return mx::add(x, mx::array(1.0f)); }
  };
  auto base = logits_of(m, {1, 2});
  add_hook(m, std::make_shared<Scale>(2.0f));
  add_hook(m, std::make_shared<Shift>());
  EXPECT_LT(max_abs_diff(logits_of(m, {1, 2}), mx::add(mx::multiply(base, mx::array(2.0f)), mx::array(1.0f))), 1e-5);
}

TEST(Hooks, ExtractedVectorIsMeanActivationDifference) {
  TinyModel t;
  auto& m = *t.model;
  std::vector<std::vector<int>> pos = {{1, 2, 3}, {7, 8}}, neg = {{4, 5}, {9, 10, 11, 12}};
  auto v = extract_steering_vector(m, pos, neg, 0, ActivationCaptureHook::Reduce::Last);
  EXPECT_TRUE(m.hooks().empty());  // the capture hook is removed again
  auto last_row = [&](const std::vector<int>& ids) {
    auto cap = std::make_shared<ActivationCaptureHook>(std::vector<int>{0}, ActivationCaptureHook::Reduce::All);
    int handle = add_hook(m, cap);
    logits_of(m, ids);
    m.hooks().remove(handle);
    auto a = cap->captured(0).at(0);
    return mx::reshape(mx::slice(a, {0, a.shape(1) - 1, 0}, a.shape()), {32});
  };
  auto expected = mx::subtract(mx::divide(mx::add(last_row(pos[0]), last_row(pos[1])), mx::array(2.0f)),
                               mx::divide(mx::add(last_row(neg[0]), last_row(neg[1])), mx::array(2.0f)));
  EXPECT_LT(max_abs_diff(v, expected), 1e-5);
  EXPECT_GT(mx::max(mx::abs(v)).item<float>(), 1e-3);
}

TEST(Hooks, ExtraParamsRoundTripThroughSafetensors) {
  TinyModel t;
  auto& m = *t.model;
  m["_persona_v"] = random_vector(32, 5);
  m["_soft"] = mx::ones({2, 32});
  auto path = (t.dir / "extra.safetensors").string();
  m.extra_params().save(path);
  ExtraParams loaded;
  loaded.load(path);
  EXPECT_EQ(loaded.keys(), (std::vector<std::string>{"_persona_v", "_soft"}));
  EXPECT_EQ(max_abs_diff(loaded.get("_persona_v"), m.extra_params().get("_persona_v")), 0.0f);
  write_file(t.dir / "bad.safetensors", "not a safetensors file");
  EXPECT_NE(error_of([&] { loaded.load((t.dir / "bad.safetensors").string()); }).find("[safetensors]"),
            std::string::npos);
}

TEST(Hooks, BadSettingsAreClearErrors) {
  TinyModel t;
  auto& m = *t.model;
  EXPECT_EQ(error_of([&] {
              add_hook(m, std::make_shared<ResidualInjectionHook>(std::vector<int>{2}, mx::zeros({32}), 1.0));
            }),
            "[hooks] layer 2 is out of range (the model has layers 0-1)");
  add_hook(m, std::make_shared<ResidualInjectionHook>(std::vector<int>{0}, VectorSource("_missing"), 1.0));
  EXPECT_EQ(error_of([&] { logits_of(m, {1}); }), "[params] no extra parameter '_missing'");
  m.hooks().clear();
  add_hook(m, std::make_shared<ResidualInjectionHook>(std::vector<int>{0}, mx::zeros({31}), 1.0));
  EXPECT_NE(error_of([&] { logits_of(m, {1}); }).find("must have shape [32]"), std::string::npos);
  EXPECT_EQ(error_of([] { parse_hook_positions("some"); }),
            "[hooks] positions must be all, prompt or generated, got 'some'");
}

}  // namespace
}  // namespace mlxgp::testing
