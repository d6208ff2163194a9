// Trainer: float32 masters, compute in the configured dtype, loss scaling, accumulation, clipping.
#include "mlxgp/training.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "models/layers.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

bool is_extra(Model& model, const std::string& name) {
  return model.parameters().count(name) == 0 && model.extra_params().has(name);
}

// The settings a run may take (in the constructor, and again from set_config).
void check_config(const TrainingConfig& c) {
  if (c.dtype != mx::float32 && c.dtype != mx::bfloat16 && c.dtype != mx::float16)
    fail("train", "the compute dtype must be float32, bfloat16 or float16");
  if (!(c.label_smoothing >= 0 && c.label_smoothing <= 1)) fail("train", "label_smoothing must be in [0, 1]");
  // Settings are checked as the float32 the arithmetic uses (1e39 is inf there): a non-finite one would
  // turn every weight into NaN at the first update.
  if (!(c.max_grad_norm >= 0) || !std::isfinite(static_cast<float>(c.max_grad_norm)))
    fail("train", "max_grad_norm must be a finite number >= 0");
  const auto& ls = c.loss_scale;
  if (ls.kind != LossScaleConfig::Kind::None && !(ls.scale > 0 && std::isfinite(ls.scale)))
    fail("train", "the loss scale must be a positive number");
  if (ls.kind == LossScaleConfig::Kind::Dynamic &&
      (!(ls.growth_factor > 1) || !(ls.backoff_factor > 0 && ls.backoff_factor < 1) || ls.growth_interval < 1))
    fail("train", "dynamic loss scaling needs growth_factor > 1, backoff_factor in (0, 1), growth_interval >= 1");
}

double initial_scale(const LossScaleConfig& ls) { return ls.kind == LossScaleConfig::Kind::None ? 1.0 : ls.scale; }

bool same_scaling(const LossScaleConfig& a, const LossScaleConfig& b) {
  return a.kind == b.kind && a.scale == b.scale && a.growth_factor == b.growth_factor &&
         a.backoff_factor == b.backoff_factor && a.growth_interval == b.growth_interval;
}

// The seed of one micro-batch's LoRA dropout masks: distinct per step, micro-batch and rank, and a function
// of the step count alone, so a resumed run draws the masks the uninterrupted one does (splitmix64).
uint64_t dropout_seed(uint64_t seed, int step, size_t micro, int rank) {
  uint64_t h = seed;
  for (uint64_t v : {static_cast<uint64_t>(step), static_cast<uint64_t>(micro), static_cast<uint64_t>(rank)}) {
    h += 0x9E3779B97F4A7C15ULL + v;
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ULL;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBULL;
    h ^= h >> 31;
  }
  return h;
}

}  // namespace

Trainer::Trainer(Model& model, std::vector<std::string> trainable, std::unique_ptr<Optimizer> optimizer,
                 TrainingConfig config, LrSchedule schedule)
    : model_(model),
      names_(std::move(trainable)),
      optimizer_(std::move(optimizer)),
      config_(config),
      schedule_(schedule) {
  // A sharded layer's backward would need its own collectives (the input gradient of a row-split
  // projection summed over the ranks); without them each rank's gradients are wrong.
  if (model.tensor_parallel_group())
    fail("train",
         "a tensor-parallel (sharded) model cannot be trained: train the whole model on every rank (data "
         "parallel: TrainingConfig(group=...) / --distributed)");
  if (names_.empty()) fail("train", "nothing to train");
  if (!optimizer_) fail("train", "no optimizer");
  check_config(config_);
  if (!(schedule_.lr >= 0) || !std::isfinite(static_cast<float>(schedule_.lr)))
    fail("train", "the learning rate must be a finite number >= 0 (in float32)");
  if (schedule_.warmup_steps < 0 || schedule_.total_steps < 0) fail("train", "warmup and total steps must be >= 0");
  // transformers draws the noise from torch's RNG in training mode; mlxgp cannot reproduce those draws.
  if (model_.config().sparsemixer)
    fail("train",
         "phimoe cannot be trained: its router samples the experts in training (sparsemixer's Gumbel "
         "draws from torch's RNG), which mlxgp cannot reproduce");
  if (model_.config().router_jitter_noise > 0)
    fail("train", "router_jitter_noise > 0 is not supported in training (set it to 0 in config.json)");
  if (const auto& mc = model_.config(); mc.dropout > 0) {
    std::ostringstream v;
    v << mc.dropout;
    fail("train", "config.json sets " + mc.dropout_key + " = " + v.str() +
                      ", but mlxgp trains without model dropout (set the model's dropout rates to 0 to train)");
  }
  scale_ = initial_scale(config_.loss_scale);
  for (auto& n : names_) {
    std::optional<mx::array> p;
    if (auto it = model_.parameters().find(n); it != model_.parameters().end()) p = it->second;
    else if (model_.extra_params().has(n)) p = model_.extra_params().get(n);
    else fail("train", "no parameter '" + n + "' to train");
    if (is_buffer(n))
      fail("train", "'" + n + "' is a buffer transformers does not train; leave it out of the trainable set");
    if (!mx::issubdtype(p->dtype(), mx::floating))
      fail("train", "parameter '" + n + "' is quantized or not floating point and cannot be trained (use LoRA)");
    // A quantized layer's scales and biases are floating point, but its packed weight has no gradient.
    for (const char* part : {".scales", ".biases"})
      if (n.ends_with(part)) {
        auto w = model_.parameters().find(n.substr(0, n.size() - std::strlen(part)) + ".weight");
        if (w != model_.parameters().end() && !mx::issubdtype(w->second.dtype(), mx::floating))
          fail("train", "parameter '" + n +
                            "' belongs to quantized weights, which cannot be trained (use LoRA, "
                            "or load the model with dtype float32)");
      }
    masters_.insert_or_assign(n, mx::astype(*p, mx::float32));
  }
  mx::eval(std::vector<mx::array>([&] {
    std::vector<mx::array> v;
    for (auto& [k, a] : masters_) v.push_back(a);
    return v;
  }()));
  bind(masters_);
}

void Trainer::bind(const WeightMap& values) {
  WeightMap model_updates;
  for (auto& [name, v] : values) {
    auto cast = v.dtype() == config_.dtype ? v : mx::astype(v, config_.dtype);
    if (is_extra(model_, name)) model_.extra_params().set(name, cast);
    else model_updates.insert_or_assign(name, cast);
  }
  if (!model_updates.empty()) model_.set_parameters(model_updates);
}

TrainStepResult Trainer::step(const std::vector<Batch>& micro_batches, std::optional<int> pad_id) {
  if (micro_batches.empty()) fail("train", "a step needs at least one batch");
  TrainStepResult r;
  r.lr = schedule_.at(optimizer_->steps());
  r.loss_scale = scale_;
  std::vector<mx::array> params;
  for (auto& n : names_) params.push_back(masters_.at(n));
  std::vector<int> argnums(params.size());
  for (size_t i = 0; i < argnums.size(); ++i) argnums[i] = static_cast<int>(i);

  // The step's target count, before any forward: torch's GradScaler scales the mean loss, and with
  // accumulation each micro-batch's loss sum is divided by the step's count (HF Trainer's
  // num_items_in_batch), so the scale meets the gradients as large as torch's and overflows when they do.
  const int ranks = config_.group ? config_.group->size() : 1, rank = config_.group ? config_.group->rank() : 0;
  std::vector<mx::array> counts;
  for (auto& batch : micro_batches)
    counts.push_back(
        mx::sum(mx::not_equal(next_token_targets(batch, pad_id, model_.config().vocab_size), mx::array(-100))));
  auto step_count = mx::astype(mx::sum(mx::stack(counts)), mx::float32);
  if (ranks > 1) step_count = mx::distributed::all_sum(step_count, *config_.group);
  const double n_step = step_count.item<float>();
  if (n_step == 0) fail("train", "the batch has no target tokens (everything is padding or ignored)");

  // Token-weighted accumulation: each micro-batch contributes loss_i * n_i / n_step, so the step equals
  // one batch holding all the micro-batches.
  std::vector<mx::array> grad_sum;
  mx::array loss_sum = mx::array(0.0f), count = mx::array(0.0f), aux_sum = mx::array(0.0f);
  bool has_aux = false;
  const auto dropout = model_.lora_dropout();
  for (size_t k = 0; k < micro_batches.size(); ++k) {
    const auto& batch = micro_batches[k];
    const float scale = static_cast<float>(scale_ / n_step);
    auto fn = [&](const std::vector<mx::array>& ps) {
      WeightMap traced;
      for (size_t i = 0; i < ps.size(); ++i) traced.insert_or_assign(names_[i], ps[i]);
      bind(traced);
      auto lr = loss_forward(model_, batch, config_.label_smoothing, pad_id);
      auto n = mx::astype(lr.n_tokens, mx::float32);
      auto total = mx::multiply(lr.loss, n);
      has_aux = lr.aux_loss.has_value();
      auto aux = lr.aux_loss ? mx::multiply(mx::stop_gradient(*lr.aux_loss), n) : mx::array(0.0f);
      return std::vector<mx::array>{mx::multiply(total, mx::array(scale)), total, n, aux};
    };
    // LoRA dropout (peft: B(A(dropout(x)))) in training steps only, for the forward traced here.
    std::optional<layers::LoraDropoutScope> drop;
    if (dropout.p > 0) drop.emplace(static_cast<float>(dropout.p), dropout_seed(dropout.seed, attempts_, k, rank));
    auto [values, grads] = mx::value_and_grad(fn, argnums)(params);
    loss_sum = mx::add(loss_sum, values[1]);
    count = mx::add(count, values[2]);
    aux_sum = mx::add(aux_sum, values[3]);
    if (grad_sum.empty()) grad_sum = grads;
    else
      for (size_t i = 0; i < grads.size(); ++i) grad_sum[i] = mx::add(grad_sum[i], grads[i]);
    mx::eval(loss_sum, count, aux_sum);
    mx::eval(grad_sum);
  }
  if (ranks > 1) {
    // One all_sum over every gradient, the loss sum and the token count, flattened together.
    std::vector<mx::array> flat;
    for (auto& g : grad_sum) flat.push_back(mx::reshape(mx::astype(g, mx::float32), {-1}));
    flat.push_back(mx::reshape(loss_sum, {1}));
    flat.push_back(mx::reshape(count, {1}));
    flat.push_back(mx::reshape(aux_sum, {1}));
    auto summed = mx::distributed::all_sum(mx::concatenate(flat, 0), *config_.group);
    int64_t at = 0;
    auto next = [&](const mx::array& like) {
      const int64_t len = static_cast<int64_t>(like.size());
      auto part = mx::slice(summed, {static_cast<int>(at)}, {static_cast<int>(at + len)});
      at += len;
      return mx::reshape(part, like.shape());
    };
    for (auto& g : grad_sum) g = next(g);
    loss_sum = mx::reshape(next(mx::reshape(loss_sum, {1})), {});
    count = mx::reshape(next(mx::reshape(count, {1})), {});
    aux_sum = mx::reshape(next(mx::reshape(aux_sum, {1})), {});
    mx::eval(grad_sum);
    mx::eval(loss_sum, count, aux_sum);
  }
  const double n = count.item<float>();
  r.n_tokens = static_cast<int>(n);
  r.loss = loss_sum.item<float>() / n;
  if (has_aux) r.aux_loss = aux_sum.item<float>() / n;

  // Unscale: gradients of (scale * mean) -> gradients of the mean.
  WeightMap grads;
  // The injected step counts skipped steps too (the CLI's step N), so it never fires twice.
  const bool inject = config_.inject_overflow_step == attempts_ + 1;
  const float unscale = inject ? INFINITY : static_cast<float>(1.0 / scale_);
  std::vector<mx::array> finite;
  for (size_t i = 0; i < names_.size(); ++i) {
    auto g = mx::multiply(mx::astype(grad_sum[i], mx::float32), mx::array(unscale));
    finite.push_back(mx::all(mx::isfinite(g)));
    grads.insert_or_assign(names_[i], g);
  }
  last_grads_ = grads;
  const bool grads_ok = mx::all(mx::stack(finite)).item<bool>();
  const bool loss_ok = std::isfinite(r.loss);
  const bool dynamic = config_.loss_scale.kind == LossScaleConfig::Kind::Dynamic;
  if (!grads_ok || !loss_ok) {
    bind(masters_);  // the model must not keep the traced arrays
    if (!dynamic)
      fail("train", std::string("the ") + (loss_ok ? "gradients are" : "loss is") + " not finite at step " +
                        std::to_string(optimizer_->steps() + 1) +
                        " (lower the learning rate, or use dynamic loss scaling with fp16)");
    // torch GradScaler: skip the update and back off the scale.
    r.skipped = true;
    scale_ *= config_.loss_scale.backoff_factor;
    good_steps_ = 0;
    ++attempts_;
    return r;
  }
  // The norm before clipping, reported whether or not it clips (torch's clip_grad_norm_ returns it too).
  r.grad_norm =
      (config_.max_grad_norm > 0 ? clip_grad_norm(grads, config_.max_grad_norm) : grad_norm(grads)).item<float>();
  const WeightMap before = masters_;
  const auto optimizer_before = optimizer_->snapshot();
  const int steps_before = optimizer_->steps();
  optimizer_->step(masters_, grads, r.lr);
  std::vector<mx::array> to_eval, updated_finite;
  for (auto& [k, a] : masters_) {
    to_eval.push_back(a);
    updated_finite.push_back(mx::all(mx::isfinite(a)));
  }
  for (auto& [k, a] : optimizer_->state()) to_eval.push_back(a);
  auto all_finite = mx::all(mx::stack(updated_finite));
  to_eval.push_back(all_finite);
  mx::eval(to_eval);
  if (!all_finite.item<bool>()) {
    // Finite gradients, yet weights that are not (a huge learning rate, broken optimizer state from a
    // resumed checkpoint): keep the weights before this step, so nothing non-finite is ever saved.
    masters_ = before;
    optimizer_->restore(*optimizer_before);
    bind(masters_);
    fail("train", "the update at step " + std::to_string(steps_before + 1) +
                      " makes weights non-finite (learning rate too large, or non-finite optimizer state?); the "
                      "weights stay as they were before it");
  }
  bind(masters_);
  ++attempts_;
  if (dynamic && ++good_steps_ >= config_.loss_scale.growth_interval) {
    scale_ *= config_.loss_scale.growth_factor;
    good_steps_ = 0;
  }
  return r;
}

void Trainer::set_config(const TrainingConfig& config) {
  if (config.dtype != config_.dtype)
    fail("train", "the compute dtype cannot change during a run (start a new optimizer state to change it)");
  const auto group_of = [](const TrainingConfig& c) {
    return c.group ? std::make_pair(c.group->rank(), c.group->size()) : std::make_pair(0, 1);
  };
  if (group_of(config) != group_of(config_))
    fail("train", "the data-parallel group cannot change during a run (start a new optimizer state to change it)");
  check_config(config);
  if (!same_scaling(config.loss_scale, config_.loss_scale)) {
    scale_ = initial_scale(config.loss_scale);
    good_steps_ = 0;
  }
  config_ = config;
}

double Trainer::evaluate(const std::vector<Batch>& batches, std::optional<int> pad_id) {
  double total = 0, count = 0;
  const int ranks = config_.group ? config_.group->size() : 1, rank = config_.group ? config_.group->rank() : 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    if (static_cast<int>(i % ranks) != rank) continue;
    const auto& b = batches[i];
    auto lr = loss_forward(model_, b, 0.0, pad_id);
    auto n = mx::astype(lr.n_tokens, mx::float32);
    auto s = mx::multiply(lr.loss, n);
    mx::eval(s, n);
    if (n.item<float>() > 0) {
      total += s.item<float>();
      count += n.item<float>();
    }
  }
  if (ranks > 1) {
    auto sums =
        mx::distributed::all_sum(mx::array({static_cast<float>(total), static_cast<float>(count)}), *config_.group);
    mx::eval(sums);
    total = sums.data<float>()[0];
    count = sums.data<float>()[1];
  }
  if (count == 0) fail("train", "the evaluation data has no target tokens");
  return total / count;
}

WeightMap Trainer::state() const {
  WeightMap s;
  for (auto& [k, a] : masters_) s.insert_or_assign("master." + k, a);
  for (auto& [k, a] : optimizer_->state()) s.insert_or_assign("optimizer." + k, a);
  s.insert_or_assign("scaler.scale", mx::array(static_cast<float>(scale_)));
  s.insert_or_assign("scaler.good_steps", mx::array(good_steps_));
  // Skipped (overflow) steps leave the optimizer behind the step count: its bias correction and the
  // learning-rate schedule follow the updates actually made, so a resume needs both counts.
  s.insert_or_assign("trainer.steps", mx::array(attempts_));
  s.insert_or_assign("trainer.optimizer_steps", mx::array(optimizer_->steps()));
  return s;
}

void Trainer::load_state(const WeightMap& state, int steps) {
  WeightMap masters, opt;
  for (auto& [k, a] : state) {
    if (k.rfind("master.", 0) == 0) masters.insert_or_assign(k.substr(7), a);
    else if (k.rfind("optimizer.", 0) == 0) opt.insert_or_assign(k.substr(10), a);
  }
  for (auto& n : names_) {
    auto it = masters.find(n);
    if (it == masters.end()) fail("train", "the checkpoint has no master copy of '" + n + "'");
    if (it->second.shape() != masters_.at(n).shape())
      fail("train", "the checkpoint's '" + n + "' has another shape: it belongs to another model");
  }
  if (masters.size() != names_.size()) fail("train", "the checkpoint trains other parameters than this run");
  // Optimizer state belongs to a trained parameter, has its shape and is finite: a broadcastable or foreign
  // entry would train on silently (or fail later with a raw shape error).
  for (auto& [k, a] : opt) {
    const auto dot = k.rfind('.');
    const std::string base = k.substr(0, dot == std::string::npos ? 0 : dot);
    auto m = masters.find(base);
    if (m == masters.end())
      fail("train", "the checkpoint's optimizer state '" + k + "' belongs to no trained parameter");
    if (a.shape() != m->second.shape())
      fail("train", "the checkpoint's optimizer state '" + k + "' does not have its parameter's shape");
    if (!mx::all(mx::isfinite(a)).item<bool>())
      fail("train", "the checkpoint's optimizer state '" + k + "' holds NaN or infinite values");
  }
  for (auto& [n, a] : masters)
    if (!mx::all(mx::isfinite(a)).item<bool>())
      fail("train", "the checkpoint's master copy of '" + n + "' holds NaN or infinite values");
  // One finite number each (scale > 0, good steps >= 0).
  auto scalar_entry = [&](const char* key) -> std::optional<double> {
    auto it = state.find(key);
    if (it == state.end()) return std::nullopt;
    if (it->second.size() != 1) fail("train", std::string("the checkpoint's '") + key + "' is not one number");
    auto a = mx::astype(it->second, mx::float64, mx::Device::cpu);
    mx::eval(a);
    const double v = a.item<double>();
    if (!std::isfinite(v)) fail("train", std::string("the checkpoint's '") + key + "' is not finite");
    return v;
  };
  const auto scale = scalar_entry("scaler.scale"), good = scalar_entry("scaler.good_steps");
  if (scale && !(*scale > 0)) fail("train", "the checkpoint's 'scaler.scale' must be > 0");
  if (good && !(*good >= 0)) fail("train", "the checkpoint's 'scaler.good_steps' must be >= 0");
  // Checkpoints written before these entries existed count every step as an update.
  const auto taken = scalar_entry("trainer.steps"), updates = scalar_entry("trainer.optimizer_steps");
  if (taken && *taken != steps)
    fail("train", "the checkpoint's 'trainer.steps' (" + std::to_string(static_cast<long long>(*taken)) +
                      ") is not its step " + std::to_string(steps));
  if (updates && !(*updates >= 0 && *updates <= steps && *updates == std::floor(*updates)))
    fail("train", "the checkpoint's 'trainer.optimizer_steps' must be a whole number in [0, its step]");
  masters_ = masters;
  optimizer_->load_state(opt, updates ? static_cast<int>(*updates) : steps);
  attempts_ = steps;
  if (scale) scale_ = *scale;
  if (good) good_steps_ = static_cast<int>(*good);
  bind(masters_);
}

}  // namespace mlxgp
