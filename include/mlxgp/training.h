// Training: a Trainer keeps float32 master copies of the trainable tensors, computes the loss in the
// chosen dtype with MLX's value_and_grad, unscales and checks the gradients (dynamic loss scaling
// skips overflowing steps and backs off), clips, and lets the optimizer update the masters.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <mlx/distributed/distributed.h>
#include <mlx/dtype.h>

#include "mlxgp/loss.h"
#include "mlxgp/model.h"
#include "mlxgp/optimizer.h"

namespace mlxgp {

struct LossScaleConfig {
  enum class Kind { None, Static, Dynamic };
  Kind kind = Kind::None;
  double scale = 65536.0;  // static value, or the dynamic starting value (torch GradScaler init_scale)
  double growth_factor = 2.0, backoff_factor = 0.5;
  int growth_interval = 2000;  // finite steps before the dynamic scale grows
};

struct TrainingConfig {
  mlx::core::Dtype dtype = mlx::core::float32;  // compute dtype; masters stay float32
  double label_smoothing = 0.0;
  double max_grad_norm = 0.0;  // 0: no clipping
  LossScaleConfig loss_scale;
  // Testing aid: the step (1-based) whose gradients are made infinite, to exercise overflow handling.
  int inject_overflow_step = 0;
  // For train_step(): what to train. Empty: the LoRA adapters when the model has some, otherwise every
  // floating-point parameter. Names may also be extra parameters (a soft prompt).
  std::vector<std::string> trainable;
  // Data parallelism (mlxgp/distributed.h): each rank steps on its own share of the global batch; the
  // gradient sums, losses and token counts are summed over the group before the update, so every rank
  // applies the update one process would make on the whole batch.
  std::optional<mlx::core::distributed::Group> group;
};

struct TrainStepResult {
  double loss = 0;  // mean next-token loss over the step's counted tokens (+ coef * aux_loss, as transformers)
  // MoE with output_router_logits: the load-balancing loss before its coefficient, micro-batches weighted
  // by their target tokens as the loss is.
  std::optional<double> aux_loss;
  int n_tokens = 0;
  double grad_norm = 0;   // the gradients' norm before any clipping (0 when the step was skipped)
  bool skipped = false;   // overflow: no update, loss scale backed off
  double loss_scale = 1;  // the scale used for this step
  double lr = 0;
};

class Trainer {
 public:
  // `trainable`: names of model parameters (Model::parameters()) or extra parameters (soft prompts).
  Trainer(Model& model, std::vector<std::string> trainable, std::unique_ptr<Optimizer> optimizer, TrainingConfig config,
          LrSchedule schedule);

  // One optimizer step over micro-batches (gradient accumulation): gradients are summed token-weighted,
  // so the result equals one big batch. Throws [train] on a non-finite loss without dynamic scaling.
  TrainStepResult step(const std::vector<Batch>& micro_batches, std::optional<int> pad_id = std::nullopt);
  // Mean loss without updating anything. With a group, rank r evaluates batches r, r + size, ... and the
  // sums are combined, so every rank returns the loss over all the batches.
  double evaluate(const std::vector<Batch>& batches, std::optional<int> pad_id = std::nullopt);

  int step_count() const { return optimizer_->steps(); }  // updates made (skipped steps excluded)
  int steps_taken() const { return attempts_; }           // step() calls that returned, skipped ones included
  double loss_scale() const { return scale_; }
  const std::vector<std::string>& trainable() const { return names_; }
  const WeightMap& masters() const { return masters_; }
  // The unscaled gradients of the last step, before clipping.
  const WeightMap& last_gradients() const { return last_grads_; }
  Optimizer& optimizer() { return *optimizer_; }
  // Takes a new config for the following steps: label smoothing, clipping, the overflow test aid and the
  // loss scaling (a changed one starts its scale afresh) apply; the compute dtype and the data-parallel
  // group belong to the whole run and are refused with [train] when they differ.
  void set_config(const TrainingConfig& config);
  // Everything a checkpoint needs to resume exactly (masters, optimizer state, scaler, the step and update
  // counts); and back. `steps`: the steps taken (the checkpoint's step).
  WeightMap state() const;
  void load_state(const WeightMap& state, int steps);

 private:
  void bind(const WeightMap& values);  // casts to the compute dtype and puts them into the model
  Model& model_;
  std::vector<std::string> names_;
  std::unique_ptr<Optimizer> optimizer_;
  TrainingConfig config_;
  LrSchedule schedule_;
  WeightMap masters_, last_grads_;
  double scale_ = 1.0;
  int good_steps_ = 0;
  int attempts_ = 0;  // steps taken, skipped ones included (the optimizer counts only its updates)
};

class Hook;

// The seed's one-call API. A TrainState carries what must survive between calls (float32 masters,
// optimizer moments, loss-scaler state); it binds to the model and trainable set of its first call. Each
// call's config applies to its step (Trainer::set_config: the dtype, group and trainable set cannot change). `hooks`
// are attached for the duration of the call (e.g. a SoftPromptHook).
class TrainState {
 public:
  explicit TrainState(std::unique_ptr<Optimizer> optimizer, LrSchedule schedule = {});
  Trainer* trainer() { return trainer_.get(); }

 private:
  friend TrainStepResult train_step(Model&, const Batch&, TrainState&, const TrainingConfig&,
                                    const std::vector<std::shared_ptr<Hook>>&, std::optional<int>);
  std::unique_ptr<Optimizer> optimizer_;
  LrSchedule schedule_;
  std::unique_ptr<Trainer> trainer_;
  const Model* model_ = nullptr;
};

TrainStepResult train_step(Model& model, const Batch& batch, TrainState& state, const TrainingConfig& config,
                           const std::vector<std::shared_ptr<Hook>>& hooks = {},
                           std::optional<int> pad_id = std::nullopt);

// Whether `name` is a tensor transformers keeps as a buffer, loaded and saved but never trained (glm4_moe's
// e_score_correction_bias, which DeepSeek-V3-style training moves by its own balancing rule).
bool is_buffer(const std::string& name);
// The parameters full fine-tuning trains: every floating-point one but the buffers, sorted.
std::vector<std::string> full_trainable(Model& model);
// What a full fine-tune saves: `trained` (the trainer's masters) and the model's buffers beside them, which
// transformers reads as persistent state (without them from_pretrained would start the routing biases or gemma4's
// layer scalars afresh).
WeightMap full_model_weights(Model& model, const WeightMap& trained);

}  // namespace mlxgp
