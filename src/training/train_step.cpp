// train_step(): the seed's one-call training API over a Trainer kept in a TrainState.
#include <algorithm>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/hooks.h"
#include "mlxgp/lora.h"
#include "mlxgp/training.h"

namespace mx = mlx::core;

namespace mlxgp {

TrainState::TrainState(std::unique_ptr<Optimizer> optimizer, LrSchedule schedule)
    : optimizer_(std::move(optimizer)), schedule_(schedule) {
  if (!optimizer_) fail("train", "train_step needs an optimizer");
}

namespace {

std::vector<std::string> default_trainable(Model& model) {
  auto lora = lora_parameter_names(model);
  return lora.empty() ? full_trainable(model) : lora;
}

}  // namespace

// (glm4_moe's routing bias and lfm2_moe's expert_bias; apertus's xIELU beta / eps, which XIELUActivation registers as
// buffers; gemma4_text's layer_scalar, a buffer of Gemma4TextDecoderLayer)
bool is_buffer(const std::string& name) {
  return name.ends_with(".e_score_correction_bias") || name.ends_with(".feed_forward.expert_bias") ||
         name.ends_with(".act_fn.beta") || name.ends_with(".act_fn.eps") || name.ends_with(".layer_scalar");
}

WeightMap full_model_weights(Model& model, const WeightMap& trained) {
  WeightMap out = trained;
  for (auto& [name, w] : model.parameters())
    if (is_buffer(name) && !out.count(name)) out.insert_or_assign(name, w);
  return out;
}

std::vector<std::string> full_trainable(Model& model) {
  std::vector<std::string> names;
  for (auto& [name, w] : model.parameters())
    if (mx::issubdtype(w.dtype(), mx::floating) && !is_buffer(name)) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

TrainStepResult train_step(Model& model, const Batch& batch, TrainState& state, const TrainingConfig& config,
                           const std::vector<std::shared_ptr<Hook>>& hooks, std::optional<int> pad_id) {
  // Hooks stay attached only for this call, even when the step throws.
  struct Attached {
    Model& m;
    std::vector<int> handles;
    ~Attached() {
      for (int h : handles) m.hooks().remove(h);
    }
  } attached{model, {}};
  for (auto& h : hooks) attached.handles.push_back(model.hooks().add(h));
  if (!state.trainer_) {
    auto names = config.trainable.empty() ? default_trainable(model) : config.trainable;
    state.trainer_ = std::make_unique<Trainer>(model, names, std::move(state.optimizer_), config, state.schedule_);
    state.model_ = &model;
  } else if (state.model_ != &model) {
    fail("train", "this TrainState belongs to another model");
  } else {
    // A later config applies from this step on; what it trains cannot change (the masters and optimizer
    // state belong to the first set).
    if (!config.trainable.empty()) {
      auto want = config.trainable, have = state.trainer_->trainable();
      std::sort(want.begin(), want.end());
      std::sort(have.begin(), have.end());
      if (want != have)
        fail("train", "the trainable tensors cannot change during a run (this state trains " +
                          std::to_string(have.size()) + "); start a new optimizer state to train others");
    }
    state.trainer_->set_config(config);
  }
  return state.trainer_->step({batch}, pad_id);
}

}  // namespace mlxgp
