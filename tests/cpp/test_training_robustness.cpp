// Checkpoint folders after interrupted runs (issue 20): what a killed save leaves is removed by the
// next run, never a complete checkpoint; NaN adapters are refused at load.
#include <gtest/gtest.h>

#include <cmath>

#include <mlx/mlx.h>

#include "mlxgp/checkpoint.h"
#include "mlxgp/loss.h"
#include "mlxgp/lora.h"
#include "mlxgp/optimizer.h"
#include "mlxgp/training.h"
#include "mlxgp/safetensors_io.h"
#include "test_models_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using namespace mlxgp::testing;

namespace {

// A tiny model's rank-2 LoRA adapters saved in `dir`; returns the file's path.
std::string saved_lora(const TempDir& dir) {
  TinyModel m;
  LoraConfig c;
  c.rank = 2;
  add_lora(*m.model, c);
  const auto path = (dir / "a.safetensors").string();
  save_lora(*m.model, path, c);
  return path;
}

}  // namespace

TEST(CheckpointRobustness, StaleTemporariesAreRemovedAndCompleteCheckpointsKept) {
  TempDir t;
  const auto out = t / "run";
  save_checkpoint(out.string(), 1, {{"trainer_state", {{"master.x", mx::ones({2})}}}}, {{"identity", "x"}});
  fs::create_directories(out / ".tmp-checkpoint-2-42");
  write_file(out / ".tmp-checkpoint-2-42" / "trainer_state.safetensors", "partial");
  write_file(out / "model.safetensors.tmp.safetensors", "partial");
  write_file(out / "latest.tmp", "checkpoint-");
  write_file(out / "notes.txt", "mine");
  EXPECT_EQ(remove_stale_checkpoint_temps(out.string()), 3);
  EXPECT_TRUE(fs::exists(out / "checkpoint-1" / "trainer_state.safetensors"));
  EXPECT_TRUE(fs::exists(out / "notes.txt"));
  EXPECT_FALSE(fs::exists(out / ".tmp-checkpoint-2-42"));
  EXPECT_EQ(load_checkpoint(out.string()).step, 1);
  EXPECT_EQ(remove_stale_checkpoint_temps(out.string()), 0);
  EXPECT_EQ(remove_stale_checkpoint_temps((t / "missing").string()), 0);
}

TEST(CheckpointRobustness, NonFiniteLoraAdapterIsRefused) {
  TempDir t;
  const auto path = saved_lora(t);
  auto contents = load_safetensors_file(path);
  std::string poisoned;
  for (auto& [k, v] : contents.tensors)
    if (k.ends_with(".lora_B.weight")) {
      v = mx::full(v.shape(), std::nanf(""), v.dtype());
      poisoned = k;
      break;
    }
  ASSERT_FALSE(poisoned.empty());
  save_safetensors_atomic(path, contents.tensors, {contents.metadata.begin(), contents.metadata.end()});
  TinyModel fresh;
  EXPECT_EQ(error_of([&] { load_lora(*fresh.model, path); }),
            "[lora] " + path + ": adapter '" + poisoned + "' holds NaN or infinite values");
}

namespace {

Batch tiny_batch(std::vector<int> ids = {1, 5, 9, 13, 17, 21, 25, 29}) {
  return Batch{mx::array(ids.data(), {1, static_cast<int>(ids.size())}, mx::int32), std::nullopt, std::nullopt};
}

std::vector<std::string> all_weights(Model& m) {
  std::vector<std::string> names;
  for (auto& [k, v] : m.parameters()) names.push_back(k);
  return names;
}

}  // namespace

// Settings that would make every weight NaN (checked as float32: 1e39 is inf there) are refused up front; an
// update that still comes out non-finite is undone and refused, so nothing non-finite is ever saved.
TEST(TrainingRobustness, NonFiniteSettingsAndUpdatesAreRefused) {
  TinyModel m;
  auto trainer = [&](double lr, TrainingConfig cfg = {}) {
    return Trainer(*m.model, all_weights(*m.model), make_sgd(), cfg, LrSchedule{LrSchedule::Kind::Constant, lr});
  };
  for (double lr : std::initializer_list<double>{INFINITY, 1e39, -1.0, NAN})
    EXPECT_EQ(error_of([&] { trainer(lr); }), "[train] the learning rate must be a finite number >= 0 (in float32)");
  TrainingConfig nan_clip;
  nan_clip.max_grad_norm = NAN;
  EXPECT_EQ(error_of([&] { trainer(1e-3, nan_clip); }), "[train] max_grad_norm must be a finite number >= 0");
  EXPECT_EQ(error_of([&] { make_adamw({0.9, 0.999, 1e-8, INFINITY}); }),
            "[train] weight decay must be a finite number >= 0");
  EXPECT_EQ(error_of([&] { make_sgd({-0.5}); }), "[train] SGD momentum must be a finite number >= 0");

  const auto before = m.model->parameters().at("lm_head.weight");
  mx::eval(before);
  auto t = trainer(3e38);  // finite in float32, but learning rate x gradient overflows it
  EXPECT_EQ(error_of([&] { t.step({tiny_batch()}); }),
            "[train] the update at step 1 makes weights non-finite (learning rate too large, or non-finite "
            "optimizer state?); the weights stay as they were before it");
  EXPECT_TRUE(mx::array_equal(m.model->parameters().at("lm_head.weight"), before).item<bool>());
  EXPECT_EQ(t.optimizer().steps(), 0);
}

// torch.nn.utils.clip_grad_norm_ returns the norm whether or not it clips: so does a step without clipping.
TEST(TrainingRobustness, GradNormIsReportedWithoutClipping) {
  TinyModel a, b;
  TrainingConfig clip;
  clip.max_grad_norm = 1e9;  // never clips
  Trainer plain(*a.model, all_weights(*a.model), make_sgd(), {}, LrSchedule{LrSchedule::Kind::Constant, 1e-3});
  Trainer clipped(*b.model, all_weights(*b.model), make_sgd(), clip, LrSchedule{LrSchedule::Kind::Constant, 1e-3});
  const auto r1 = plain.step({tiny_batch()}), r2 = clipped.step({tiny_batch()});
  EXPECT_GT(r1.grad_norm, 0.0);
  EXPECT_FLOAT_EQ(r1.grad_norm, r2.grad_norm);
}

// Ids outside the vocabulary would read past the embedding (a crash) or score garbage.
TEST(TrainingRobustness, LossRefusesIdsOutsideTheVocabulary) {
  TinyModel m;  // vocabulary 64
  EXPECT_EQ(error_of([&] { loss_forward(*m.model, tiny_batch({1, 2, 999999})); }),
            "[loss] input_ids hold token id 999999, outside the vocabulary (size 64)");
  EXPECT_EQ(error_of([&] { loss_forward(*m.model, tiny_batch({1, -5, 3})); }),
            "[loss] input_ids hold token id -5, outside the vocabulary (size 64)");
  std::vector<int> labels = {-100, 64, 3};
  Batch b = tiny_batch({1, 2, 3});
  b.labels = mx::array(labels.data(), {1, 3}, mx::int32);
  EXPECT_EQ(error_of([&] { loss_forward(*m.model, b); }),
            "[loss] labels must be -100 (ignored) or token ids inside the vocabulary (size 64)");
  labels = {-100, 63, 3};
  b.labels = mx::array(labels.data(), {1, 3}, mx::int32);
  mx::eval(loss_forward(*m.model, b).loss);
}

// Float or bool ids would be truncated into some token, and int64 ids past int32 wrapped into one: refused.
TEST(TrainingRobustness, LossRefusesNonIntegerAndWrappingIds) {
  TinyModel m;
  Batch b = tiny_batch({1, 2, 3});
  b.input_ids = mx::array({1.0f, 2.5f, 3.0f}, {1, 3});
  EXPECT_EQ(error_of([&] { loss_forward(*m.model, b); }), "[loss] input_ids must be integers");
  b.input_ids = mx::array({true, false, true}, {1, 3});
  EXPECT_EQ(error_of([&] { loss_forward(*m.model, b); }), "[loss] input_ids must be integers");
  b.input_ids = mx::array({int64_t{1}, (int64_t{1} << 32) + 5, int64_t{3}}, {1, 3});
  EXPECT_EQ(error_of([&] { loss_forward(*m.model, b); }),
            "[loss] input_ids hold token id 4294967301, outside the vocabulary (size 64)");
  b = tiny_batch({1, 2, 3});
  b.labels = mx::array({1.0f, 2.0f, 3.0f}, {1, 3});
  EXPECT_EQ(error_of([&] { loss_forward(*m.model, b); }), "[loss] labels must be integer token ids");
  b.labels = mx::array({int64_t{-100}, (int64_t{1} << 32) + 2, int64_t{3}}, {1, 3});
  EXPECT_EQ(error_of([&] { loss_forward(*m.model, b); }),
            "[loss] labels must be -100 (ignored) or token ids inside the vocabulary (size 64)");
}

// torch's cross_entropy refuses a target outside [0, classes) that is not ignore_index (it would read another
// class's logit, or past the row).
TEST(TrainingRobustness, XentLossRefusesTargetsOutOfBounds) {
  const auto logits = mx::zeros({3, 5});
  EXPECT_EQ(error_of([&] { xent_loss(logits, mx::array({0, 5, 1})); }),
            "[loss] target 5 is out of bounds: targets must be in [0, 5) or ignore_index (-100)");
  EXPECT_EQ(error_of([&] { xent_loss(logits, mx::array({0, -1, 1})); }),
            "[loss] target -1 is out of bounds: targets must be in [0, 5) or ignore_index (-100)");
  EXPECT_EQ(error_of([&] { xent_loss(logits, mx::array({int64_t{0}, int64_t{1} << 32, int64_t{1}})); }),
            "[loss] target 4294967296 is out of bounds: targets must be in [0, 5) or ignore_index (-100)");
  EXPECT_EQ(xent_loss(logits, mx::array({0, 7, 4}), 0.0, 7).n_tokens.item<int>(), 2);  // ignore_index anywhere
  // No positions: torch.nn.functional.cross_entropy(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)) is
  // nan (a mean over nothing), not an error; no vocabulary at all is refused.
  auto none = xent_loss(mx::zeros({0, 5}), mx::zeros({0}, mx::int32));
  EXPECT_TRUE(std::isnan(none.loss.item<float>()));
  EXPECT_EQ(none.n_tokens.item<int>(), 0);
  EXPECT_EQ(error_of([&] { xent_loss(mx::zeros({2, 0}), mx::zeros({2}, mx::int32)); }),
            "[loss] logits need at least one vocabulary entry");
}

// An adapter file missing one of a layer's tensors: the layer would skip that adapter without a word.
TEST(TrainingRobustness, LoraFileMissingATensorIsRefused) {
  TempDir t;
  const auto path = saved_lora(t);
  auto contents = load_safetensors_file(path);
  std::string dropped;
  for (auto& [k, v] : contents.tensors)
    if (k.ends_with(".lora_A.weight")) dropped = k;
  ASSERT_FALSE(dropped.empty());
  contents.tensors.erase(dropped);
  save_safetensors_atomic(path, contents.tensors, {contents.metadata.begin(), contents.metadata.end()});
  TinyModel fresh;
  const std::string prefix = dropped.substr(0, dropped.size() - std::string(".lora_A.weight").size());
  EXPECT_EQ(error_of([&] { load_lora(*fresh.model, path); }),
            "[lora] " + path + ": adapter '" + prefix + "' has no 'lora_A.weight' tensor");
}

// A quantized layer's packed shapes fit two widths (4 bits in groups of 32 and 2 bits in groups of 64 both
// pack 32 inputs into 4 words and 1 group, and 64 inputs likewise): the checkpoint's own settings decide.
TEST(TrainingRobustness, LoraOnQuantizedWeightsTakesTheCheckpointsWidth) {
  auto w = tiny_weights(3);
  for (const char* name : {"model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"}) {
    auto q = mx::quantize(w.at(std::string(name) + ".weight"), 32, 4);
    w.insert_or_assign(std::string(name) + ".weight", q[0]);
    w.insert_or_assign(std::string(name) + ".scales", q[1]);
    w.insert_or_assign(std::string(name) + ".biases", q[2]);
  }
  auto model = create_model(
      parse_model_config(tiny_config_json("llama", R"(, "quantization": {"group_size": 32, "bits": 4})")), w);
  LoraConfig c;
  c.rank = 2;
  c.target_modules = {"q_proj"};
  add_lora(*model, c);
  EXPECT_EQ(model->parameters().at("model.layers.0.self_attn.q_proj.lora_A.weight").shape(), (mx::Shape{2, 32}));
  mx::eval(logits_of(*model, {1, 2, 3}));
}

TEST(TrainingRobustness, LoraTargetsMatchingNothingNameTheModelsLinears) {
  // peft's per-architecture names differ (gpt_neox: query_key_value): the error lists what this model has.
  auto model = create_model(parse_model_config(tiny_config_json()), tiny_weights(3));
  LoraConfig c;
  c.target_modules = {"query_key_value"};
  EXPECT_EQ(error_of([&] { add_lora(*model, c); }),
            "[lora] no linear layer matches the target modules (query_key_value); this model's are: down_proj, "
            "gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj");
}

// LoRA over MLX's microscaling modes (uint8 scales, no biases): the input width follows from the one bits /
// group size pair each mode allows (nvfp4 4 / 16 and mxfp8 8 / 32 here), the adapters start as a no-op, and a
// training step reaches them through the frozen packed weights.
TEST(TrainingRobustness, LoraOnMicroscalingWeights) {
  auto w = tiny_weights(3);
  const std::pair<const char*, std::tuple<int, int, const char*>> layers[] = {
      {"model.layers.0.self_attn.q_proj", {16, 4, "nvfp4"}}, {"model.layers.1.self_attn.q_proj", {32, 8, "mxfp8"}}};
  for (auto& [name, q] : layers) {
    auto [group, bits, mode] = q;
    auto packed = mx::quantize(w.at(std::string(name) + ".weight"), group, bits, mode);
    ASSERT_EQ(packed.size(), 2u);
    w.insert_or_assign(std::string(name) + ".weight", packed[0]);
    w.insert_or_assign(std::string(name) + ".scales", packed[1]);
  }
  auto model = create_model(parse_model_config(tiny_config_json(
                                "llama", R"(, "quantization": {"group_size": 16, "bits": 4, "mode": "nvfp4"})")),
                            w);
  auto before = logits_of(*model, {1, 2, 3});
  LoraConfig c;
  c.rank = 2;
  c.target_modules = {"q_proj"};
  add_lora(*model, c);
  for (const char* layer : {"0", "1"})
    EXPECT_EQ(model->parameters().at(std::string("model.layers.") + layer + ".self_attn.q_proj.lora_A.weight").shape(),
              (mx::Shape{2, 32}));
  EXPECT_TRUE(mx::array_equal(logits_of(*model, {1, 2, 3}), before).item<bool>());
  Trainer t(*model, lora_parameter_names(*model), make_adamw(), {}, LrSchedule{LrSchedule::Kind::Constant, 1e-2});
  const auto r = t.step({tiny_batch()});
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_GT(r.grad_norm, 0.0);
  EXPECT_FALSE(mx::array_equal(logits_of(*model, {1, 2, 3}), before).item<bool>());
}

// A resumed state whose optimizer entries or scaler do not fit the run is refused by name, never trained on.
TEST(TrainingRobustness, ResumedStateIsChecked) {
  TinyModel m;
  LoraConfig c;
  c.rank = 2;
  add_lora(*m.model, c);
  auto make = [&] {
    return Trainer(*m.model, lora_parameter_names(*m.model), make_adamw(), {},
                   LrSchedule{LrSchedule::Kind::Constant, 1e-3});
  };
  auto t = make();
  t.step({tiny_batch()});
  const WeightMap good = t.state();
  std::string entry;
  for (auto& [k, v] : good)
    if (k.ends_with(".exp_avg_sq")) entry = k;
  ASSERT_FALSE(entry.empty());
  const std::string name = entry.substr(std::string("optimizer.").size());
  auto with = [&](const std::string& key, const mx::array& a) {
    WeightMap s = good;
    s.insert_or_assign(key, a);
    return s;
  };
  auto fresh = make();
  EXPECT_EQ(error_of([&] { fresh.load_state(with(entry, mx::ones({1})), 1); }),
            "[train] the checkpoint's optimizer state '" + name + "' does not have its parameter's shape");
  EXPECT_EQ(error_of([&] { fresh.load_state(with(entry, mx::full(good.at(entry).shape(), NAN)), 1); }),
            "[train] the checkpoint's optimizer state '" + name + "' holds NaN or infinite values");
  EXPECT_EQ(error_of([&] { fresh.load_state(with(entry, mx::full(good.at(entry).shape(), -1.0f)), 1); }),
            "[train] optimizer state entry '" + name + "' holds negative values (a second moment is >= 0)");
  EXPECT_EQ(error_of([&] { fresh.load_state(with("optimizer.nothing.exp_avg", mx::ones({2})), 1); }),
            "[train] the checkpoint's optimizer state 'nothing.exp_avg' belongs to no trained parameter");
  EXPECT_EQ(error_of([&] { fresh.load_state(with("scaler.scale", mx::ones({5})), 1); }),
            "[train] the checkpoint's 'scaler.scale' is not one number");
  fresh.load_state(good, 1);  // the state as saved resumes
}

TEST(CheckpointRobustness, ResumeIdentityComparesTheModelByContent) {
  TinyModel a, b;  // the same seed: equal weights
  const std::string digest = model_content_digest(*a.model);
  EXPECT_EQ(model_content_digest(*b.model), digest);
  auto w = b.model->parameters().at("model.norm.weight");
  b.model->set_parameters({{"model.norm.weight", mx::add(w, mx::array(1e-6f))}});
  EXPECT_NE(model_content_digest(*b.model), digest);  // one weight nudged by 1e-6

  Checkpoint ck;
  ck.path = "run/checkpoint-4";
  ck.meta = {{"identity", {{"model", digest}, {"mode", "lora"}}}};
  check_resume_identity(ck, {{"model", digest}, {"mode", "lora"}});
  EXPECT_EQ(error_of([&] { check_resume_identity(ck, {{"model", model_content_digest(*b.model)}, {"mode", "lora"}}); }),
            "[train] checkpoint run/checkpoint-4 belongs to another model (its weights or architecture differ from "
            "this run's; checkpoints written before mlxgp compared models by content name theirs by path and cannot "
            "be resumed)");
  EXPECT_EQ(error_of([&] { check_resume_identity(ck, {{"model", digest}, {"mode", "full"}}); }),
            "[train] checkpoint run/checkpoint-4 belongs to another model or training mode (its mode differs from "
            "this run's)");
  EXPECT_EQ(error_of([&] { check_resume_identity(ck, {{"model", digest}}); }),
            "[train] checkpoint run/checkpoint-4 belongs to another model or training mode");
  ck.meta = {{"identity", "/old/path/model"}};  // an older build's identity
  EXPECT_NE(error_of([&] { check_resume_identity(ck, {{"model", digest}}); }).find("belongs to another model ("),
            std::string::npos);
}
