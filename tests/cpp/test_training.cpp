// Training pieces on a tiny random llama, checked against the same computation done another way.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <mlx/mlx.h>

#include "models/layers.h"
#include "test_models_util.h"
#include "mlxgp/loader.h"
#include "mlxgp/lora.h"
#include "mlxgp/prompt_cache.h"
#include "mlxgp/steering.h"
#include "mlxgp/training.h"

namespace mx = mlx::core;

namespace mlxgp::testing {
namespace {

Batch batch() {
  std::vector<int> ids = {1, 5, 9, 13, 17, 21, 25, 29, 2, 6, 10, 14, 18, 22, 26, 30};
  return Batch{mx::array(ids.data(), {2, 8}, mx::int32), std::nullopt, std::nullopt};
}

TEST(Training, FreshLoraLeavesLogitsUnchangedAndMergeKeepsThem) {
  TinyModel t;
  auto& m = *t.model;
  const std::vector<int> ids = {3, 7, 11, 19};
  auto base = logits_of(m, ids);
  LoraConfig c;
  c.rank = 4;
  auto names = add_lora(m, c);
  EXPECT_EQ(names.size(), 8u);                             // q_proj and v_proj of 2 layers, A and B each
  EXPECT_EQ(max_abs_diff(logits_of(m, ids), base), 0.0f);  // B starts at zero
  // Give B values, then merging must reproduce the adapted model without adapters.
  WeightMap upd;
  for (auto& n : names)
    if (n.find("lora_B") != std::string::npos)
      upd.insert_or_assign(n, mx::random::normal(m.parameters().at(n).shape(), mx::float32, mx::random::key(1)));
  m.set_parameters(upd);
  auto adapted = logits_of(m, ids);
  EXPECT_GT(max_abs_diff(adapted, base), 1e-3);
  auto path = (t.dir / "a.safetensors").string();
  save_lora(m, path, c);
  merge_lora(m);
  EXPECT_TRUE(lora_parameter_names(m).empty());
  EXPECT_LT(max_abs_diff(logits_of(m, ids), adapted), 1e-5);
  // A fresh model with the saved adapters gives the adapted logits again.
  TinyModel t2;
  auto cfg = load_lora(*t2.model, path);
  EXPECT_EQ(cfg.rank, 4);
  EXPECT_LT(max_abs_diff(logits_of(*t2.model, ids), adapted), 1e-6);
}

// GGUF weights kept as llama.cpp blocks (uint8 [out, row bytes]): the adapters take the input size from
// the blocks, not the byte count, and merging into them is refused as for any quantized weight.
TEST(Training, LoraOnLlamaCppBlocksInfersInputSizeAndRefusesMerge) {
  const auto path = std::filesystem::path(MLXGP_CACHE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "default model not installed";
  const CpuDeviceScope cpu;  // llama.cpp's blocks are kept as stored on the CPU only
  auto loaded = load(path.string());
  auto& m = *loaded.model;
  const std::vector<int> ids = {1, 504, 3458};
  auto base = logits_of(m, ids);
  LoraConfig c;
  c.rank = 4;
  add_lora(m, c);
  EXPECT_EQ(m.parameters().at("model.layers.0.self_attn.q_proj.lora_A.weight").shape(), (mx::Shape{4, 576}));
  EXPECT_EQ(m.parameters().at("model.layers.0.self_attn.v_proj.lora_B.weight").shape(), (mx::Shape{192, 4}));
  EXPECT_EQ(max_abs_diff(logits_of(m, ids), base), 0.0f);
  EXPECT_NE(error_of([&] { merge_lora(m); }).find("[lora] cannot merge into quantized"), std::string::npos);
}

// A saved prompt cache holds keys and values computed with the adapters and hooks of the model that
// made it: its identity covers the adapters, and hooks that change prompt positions are refused.
TEST(Training, PromptCacheIdentityCoversLoraAndRefusesPromptHooks) {
  TinyModel t;
  auto& m = *t.model;
  const std::vector<int> ids = {3, 7, 11, 19};
  auto bare = make_prompt_cache(m, ids);
  LoraConfig c;
  c.rank = 4;
  for (auto& n : add_lora(m, c))
    if (n.find("lora_B") != std::string::npos)
      m.set_parameters({{n, mx::random::normal(m.parameters().at(n).shape(), mx::float32, mx::random::key(1))}});
  EXPECT_EQ(error_of([&] { check_prompt_cache_use(bare, m); }),
            "[prompt-cache] the saved prompt cache was made with other LoRA adapters than this model has (adapters "
            "now); make it again with the same adapters");
  auto adapted = make_prompt_cache(m, ids);
  check_prompt_cache_use(adapted, m);  // the same adapters: usable
  // Its values differ from the bare model's (so the identity must differ).
  auto kb = dynamic_cast<const StandardKVCache&>(*bare.caches[0]).fetch()->second;  // values: v_proj carries an adapter
  auto ka = dynamic_cast<const StandardKVCache&>(*adapted.caches[0]).fetch()->second;
  EXPECT_GT(max_abs_diff(ka, kb), 1e-4f);
  // Merged adapters are plain weights the identity does not digest (only norms): the cache made with
  // adapters is refused rather than risk a silent mismatch.
  merge_lora(m);
  EXPECT_NE(error_of([&] { check_prompt_cache_use(adapted, m); }).find("other LoRA adapters"), std::string::npos);

  TinyModel t2;
  auto cache = make_prompt_cache(*t2.model, ids);
  auto v = mx::ones({t2.model->config().hidden_size});
  int h = add_hook(*t2.model, std::make_shared<ResidualInjectionHook>(std::vector<int>{0}, VectorSource(v), 1.0,
                                                                      HookPositions::Generated));
  check_prompt_cache_use(cache, *t2.model);  // generated positions only: the prompt's states are unchanged
  t2.model->hooks().remove(h);
  add_hook(*t2.model, std::make_shared<ResidualInjectionHook>(std::vector<int>{0}, VectorSource(v), 1.0));
  EXPECT_EQ(error_of([&] { check_prompt_cache_use(cache, *t2.model); }),
            "[prompt-cache] a saved prompt cache cannot be used with hooks that change prompt positions (steering on "
            "prompt positions, soft prompts): steer generated positions only or prefill the prompt");
  EXPECT_NE(error_of([&] { make_prompt_cache(*t2.model, ids); }).find("cannot save a prompt cache with hooks"),
            std::string::npos);
}

TEST(Training, GradientMatchesFiniteDifference) {
  TinyModel t;
  auto& m = *t.model;
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  auto w0 = m.parameters().at(name);
  Trainer tr(m, {name}, make_sgd(), TrainingConfig{}, LrSchedule{LrSchedule::Kind::Constant, 1e-9});
  tr.step({batch()});
  auto g = tr.last_gradients().at(name);
  mx::eval(g);
  // Central difference on one element (float32: a modest step).
  auto loss_at = [&](float delta) {
    auto onehot = mx::reshape(mx::astype(mx::equal(mx::arange(static_cast<int>(w0.size())), mx::array(5)), mx::float32),
                              w0.shape());
    auto w = mx::add(w0, mx::multiply(mx::array(delta), onehot));
    m.set_parameters({{name, w}});
    return loss_forward(m, batch()).loss.item<float>();
  };
  const float h = 1e-2f;
  float fd = (loss_at(h) - loss_at(-h)) / (2 * h);
  auto flat = mx::reshape(g, {-1});
  mx::eval(flat);
  float an = flat.data<float>()[5];
  EXPECT_NEAR(fd, an, 2e-3f * std::max(1.0f, std::fabs(an)));
}

TEST(Training, SoftPromptTrainingTouchesOnlyTheVirtualTokens) {
  TinyModel t;
  auto& m = *t.model;
  WeightMap before = m.parameters();
  m["_soft"] = mx::random::normal({3, 32}, mx::float32, mx::random::key(2));
  add_hook(m, std::make_shared<SoftPromptHook>(3, "_soft"));
  Trainer tr(m, {"_soft"}, make_adamw(), TrainingConfig{}, LrSchedule{LrSchedule::Kind::Constant, 1e-2});
  auto start = m.extra_params().get("_soft");
  double first = tr.step({batch()}).loss, last = first;
  for (int i = 0; i < 10; ++i) last = tr.step({batch()}).loss;
  EXPECT_LT(last, first);
  EXPECT_GT(max_abs_diff(m.extra_params().get("_soft"), start), 1e-3);
  for (auto& [k, v] : before) EXPECT_TRUE(mx::array_equal(v, m.parameters().at(k)).item<bool>()) << k;
}

TEST(Training, Bf16ComputeKeepsFloat32Masters) {
  TinyModel t;
  auto& m = *t.model;
  TrainingConfig cfg;
  cfg.dtype = mx::bfloat16;
  const std::string name = "model.layers.0.mlp.up_proj.weight";
  Trainer tr(m, {name}, make_adamw(), cfg, LrSchedule{LrSchedule::Kind::Constant, 1e-3});
  EXPECT_EQ(m.parameters().at(name).dtype(), mx::bfloat16);
  auto r = tr.step({batch()});
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_EQ(tr.masters().at(name).dtype(), mx::float32);
  EXPECT_EQ(m.parameters().at(name).dtype(), mx::bfloat16);
}

TEST(Training, NonFiniteLossWithoutScalingIsAClearError) {
  TinyModel t;
  auto& m = *t.model;
  TrainingConfig cfg;
  cfg.inject_overflow_step = 1;
  Trainer tr(m, {"model.norm.weight"}, make_sgd(), cfg, LrSchedule{});
  EXPECT_NE(error_of([&] { tr.step({batch()}); }).find("[train] the gradients are not finite at step 1"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { Trainer(m, {"nope"}, make_sgd(), TrainingConfig{}, LrSchedule{}); }),
            "[train] no parameter 'nope' to train");
}

// torch.nn.Dropout's inverted dropout on the adapters' input: with A = B = I and W = 0 the layer's output is
// the dropped input itself, each entry 0 or 1 / (1 - p), kept with probability 1 - p; outside a training
// scope nothing drops.
TEST(Training, LoraDropoutDropsAndRescalesTheAdapterInputOnlyInItsScope) {
  const int n = 16;
  layers::Linear l;
  l.weight = mx::zeros({n, n});
  l.lora_a = mx::eye(n);
  l.lora_b = mx::eye(n);
  l.lora_scale = mx::array(1.0f);
  l.in_features = n;
  const auto x = mx::ones({1, 4096, n});
  EXPECT_EQ(max_abs_diff(l(x), x), 0.0f);
  const float p = 0.25f;
  auto dropped = [&](uint64_t seed) {
    layers::LoraDropoutScope scope(p, seed);
    auto y = l(x);
    mx::eval(y);
    return y;
  };
  auto y = dropped(7);
  const auto kept = mx::equal(y, mx::array(1.0f / (1.0f - p)));
  EXPECT_TRUE(mx::all(mx::logical_or(kept, mx::equal(y, mx::array(0.0f)))).item<bool>());
  const double frac = mx::mean(mx::astype(kept, mx::float32)).item<float>();
  EXPECT_NEAR(frac, 1.0 - p, 5 * std::sqrt(p * (1 - p) / x.size()));  // 5 standard deviations
  EXPECT_NEAR(mx::mean(y).item<float>(), 1.0, 0.02);                  // E[dropout(x)] = x
  EXPECT_EQ(max_abs_diff(dropped(7), y), 0.0f);                       // the same seed, the same mask
  EXPECT_GT(max_abs_diff(dropped(8), y), 0.0f);
  EXPECT_EQ(max_abs_diff(l(x), x), 0.0f);  // the scope is gone
}

// add_lora's dropout reaches the Trainer's steps (the gradients of B see the dropped input: B starts at 0, so
// the first loss is the base model's either way), reproducibly per seed, and never evaluation.
TEST(Training, LoraDropoutAppliesInTrainingStepsOnly) {
  auto first_step = [&](double dropout, uint64_t seed, double* eval_loss = nullptr) {
    TinyModel t;
    LoraConfig c;
    c.rank = 4;
    c.dropout = dropout;
    c.seed = seed;
    add_lora(*t.model, c);
    Trainer tr(*t.model, lora_parameter_names(*t.model), make_sgd(), TrainingConfig{},
               LrSchedule{LrSchedule::Kind::Constant, 0.5});
    if (eval_loss) *eval_loss = tr.evaluate({batch()});
    const auto r = tr.step({batch()});
    WeightMap g = tr.last_gradients();
    g.insert_or_assign("loss", mx::array(static_cast<float>(r.loss)));
    return g;
  };
  auto differ = [](const WeightMap& a, const WeightMap& b) {
    float d = 0;
    for (auto& [k, v] : a) d = std::max(d, max_abs_diff(v, b.at(k)));
    return d;
  };
  double eval0 = 0, eval_half = 0;
  const auto none = first_step(0.0, 1, &eval0), half = first_step(0.5, 1, &eval_half);
  EXPECT_EQ(eval0, eval_half);
  EXPECT_EQ(none.at("loss").item<float>(), half.at("loss").item<float>());
  EXPECT_GT(differ(none, half), 1e-4f);
  EXPECT_EQ(differ(half, first_step(0.5, 1)), 0.0f);
  EXPECT_GT(differ(half, first_step(0.5, 2)), 1e-4f);
}

TEST(Training, ScheduleFollowsWarmupThenCosine) {
  LrSchedule s{LrSchedule::Kind::Cosine, 1.0, 10, 110};
  EXPECT_DOUBLE_EQ(s.at(0), 0.0);
  EXPECT_DOUBLE_EQ(s.at(5), 0.5);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.5, 1e-12);
  EXPECT_NEAR(s.at(110), 0.0, 1e-12);
}

}  // namespace
}  // namespace mlxgp::testing

namespace mlxgp::testing {
namespace {

TEST(Training, TrainStepMatchesTrainerAndDetachesHooks) {
  // Two identical models: the one-call API and an explicit Trainer must produce the same parameters.
  TinyModel a, b;
  LoraConfig c;
  add_lora(*a.model, c);
  add_lora(*b.model, c);
  TrainState state(make_adamw(), LrSchedule{LrSchedule::Kind::Constant, 1e-2});
  TrainingConfig cfg;
  Trainer trainer(*b.model, lora_parameter_names(*b.model), make_adamw(), cfg,
                  LrSchedule{LrSchedule::Kind::Constant, 1e-2});
  for (int i = 0; i < 3; ++i) {
    auto r1 = train_step(*a.model, batch(), state, cfg);
    auto r2 = trainer.step({batch()});
    EXPECT_FLOAT_EQ(r1.loss, r2.loss);
  }
  for (auto& n : lora_parameter_names(*a.model))
    EXPECT_TRUE(mx::array_equal(a.model->parameters().at(n), b.model->parameters().at(n)).item<bool>()) << n;
  // A hook passed to one call is gone afterwards.
  a.model->extra_params().set("_soft", mx::zeros({2, 32}));
  train_step(*a.model, batch(), state, cfg, {std::make_shared<SoftPromptHook>(2, "_soft")});
  EXPECT_TRUE(a.model->hooks().empty());
  EXPECT_EQ(error_of([&] { train_step(*b.model, batch(), state, cfg); }),
            "[train] this TrainState belongs to another model");
}

}  // namespace
}  // namespace mlxgp::testing
