// Training: losses, the project's AdamW / SGD as a TrainState (masters, moments, loss scaler kept between
// calls), train_step, and LoRA adapters.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <mlx/mlx.h>

#include "bindings.h"
#include "mlxgp/error.h"
#include "mlxgp/lora.h"
#include "mlxgp/loss.h"
#include "mlxgp/training.h"

namespace mlxgp::py {

namespace mx = mlx::core;

namespace {

struct PyTrainState {
  std::unique_ptr<TrainState> state;
  std::string name;
};

LrSchedule schedule_of(double lr, const std::string& kind, int warmup, int total) {
  LrSchedule s;
  s.kind = parse_lr_schedule(kind);
  s.lr = lr;
  s.warmup_steps = warmup;
  s.total_steps = total;
  return s;
}

Batch batch_of(const mx::array& input_ids, std::optional<mx::array> labels, std::optional<mx::array> loss_mask) {
  if (input_ids.ndim() != 2) fail("train", "input_ids must be [batch, length]");
  return Batch{mx::astype(input_ids, mx::int32), std::move(labels), std::move(loss_mask)};
}

}  // namespace

void bind_training(nb::module_& m) {
  nb::class_<TrainingConfig>(m, "TrainingConfig", "how train_step computes and applies gradients")
      .def("__init__", [](TrainingConfig* self, const std::string& dtype, double label_smoothing, double max_grad_norm,
                          const std::string& loss_scale, double loss_scale_value, std::vector<std::string> trainable) {
        auto* c = new (self) TrainingConfig();
        c->dtype = parse_dtype(dtype);
        c->label_smoothing = label_smoothing;
        c->max_grad_norm = max_grad_norm;
        if (loss_scale == "none") c->loss_scale.kind = LossScaleConfig::Kind::None;
        else if (loss_scale == "static") c->loss_scale.kind = LossScaleConfig::Kind::Static;
        else if (loss_scale == "dynamic") c->loss_scale.kind = LossScaleConfig::Kind::Dynamic;
        else fail("train", "loss_scale must be none, static or dynamic, got '" + loss_scale + "'");
        c->loss_scale.scale = loss_scale_value;
        c->trainable = std::move(trainable);
      }, nb::arg("dtype") = "float32", nb::arg("label_smoothing") = 0.0, nb::arg("max_grad_norm") = 0.0,
         nb::arg("loss_scale") = "none", nb::arg("loss_scale_value") = 65536.0,
         nb::arg("trainable") = std::vector<std::string>{})
      .def_rw("label_smoothing", &TrainingConfig::label_smoothing)
      .def_rw("max_grad_norm", &TrainingConfig::max_grad_norm)
      .def_rw("trainable", &TrainingConfig::trainable);

  nb::class_<PyTrainState>(m, "TrainState", "optimizer + float32 masters + loss scaler between train_step calls")
      .def_prop_ro("steps", [](PyTrainState& s) { return s.state->trainer() ? s.state->trainer()->step_count() : 0; })
      .def_ro("name", &PyTrainState::name)
      .def("masters", [](PyTrainState& s) {
        if (!s.state->trainer()) return WeightMap{};
        return s.state->trainer()->masters();
      });
  m.def("make_adamw", [](double lr, double beta1, double beta2, double eps, double weight_decay,
                         const std::string& schedule, int warmup, int total) {
    auto opt = make_adamw(AdamWOptions{beta1, beta2, eps, weight_decay});
    return PyTrainState{std::make_unique<TrainState>(std::move(opt), schedule_of(lr, schedule, warmup, total)), "AdamW"};
  }, nb::arg("lr"), nb::arg("beta1"), nb::arg("beta2"), nb::arg("eps"), nb::arg("weight_decay"), nb::arg("schedule"),
     nb::arg("warmup_steps"), nb::arg("total_steps"));
  m.def("make_sgd", [](double lr, double momentum, double weight_decay, bool nesterov, const std::string& schedule,
                       int warmup, int total) {
    SgdOptions o;
    o.momentum = momentum;
    o.weight_decay = weight_decay;
    o.nesterov = nesterov;
    return PyTrainState{std::make_unique<TrainState>(make_sgd(o), schedule_of(lr, schedule, warmup, total)), "SGD"};
  }, nb::arg("lr"), nb::arg("momentum"), nb::arg("weight_decay"), nb::arg("nesterov"), nb::arg("schedule"),
     nb::arg("warmup_steps"), nb::arg("total_steps"));

  m.def("train_step", [](PyModel& pm, const mx::array& input_ids, std::optional<mx::array> labels,
                         std::optional<mx::array> loss_mask, PyTrainState& state, const TrainingConfig& config,
                         const std::vector<std::shared_ptr<Hook>>& hooks, std::optional<int> pad_id) {
    Batch batch = batch_of(input_ids, std::move(labels), std::move(loss_mask));
    TrainStepResult r;
    {
      nb::gil_scoped_release release;
      r = train_step(*pm.model, batch, *state.state, config, hooks, pad_id);
    }
    nb::dict d;
    d["loss"] = r.loss;
    d["n_tokens"] = r.n_tokens;
    d["grad_norm"] = r.grad_norm;
    d["skipped"] = r.skipped;
    d["loss_scale"] = r.loss_scale;
    d["lr"] = r.lr;
    return d;
  }, nb::arg("model"), nb::arg("input_ids"), nb::arg("labels").none(), nb::arg("loss_mask").none(), nb::arg("state"),
     nb::arg("config"), nb::arg("hooks"), nb::arg("pad_id").none());

  m.def("loss_forward", [](PyModel& pm, const mx::array& input_ids, std::optional<mx::array> labels,
                           std::optional<mx::array> loss_mask, double label_smoothing, std::optional<int> pad_id) {
    Batch batch = batch_of(input_ids, std::move(labels), std::move(loss_mask));
    nb::gil_scoped_release release;
    auto r = loss_forward(*pm.model, batch, label_smoothing, pad_id);
    mx::eval(r.loss, r.n_tokens);
    return std::make_pair(r.loss, r.n_tokens);
  }, nb::arg("model"), nb::arg("input_ids"), nb::arg("labels").none(), nb::arg("loss_mask").none(),
     nb::arg("label_smoothing") = 0.0, nb::arg("pad_id").none() = nb::none());

  m.def("xent_loss", [](const mx::array& logits, const mx::array& targets, double label_smoothing, int ignore_index) {
    auto r = xent_loss(logits, targets, label_smoothing, ignore_index);
    return std::make_pair(r.loss, r.n_tokens);
  }, nb::arg("logits"), nb::arg("targets"), nb::arg("label_smoothing") = 0.0, nb::arg("ignore_index") = -100);

  m.def("add_lora", [](PyModel& pm, int rank, double alpha, double dropout, std::vector<std::string> targets, uint64_t seed) {
    LoraConfig c;
    c.rank = rank;
    c.alpha = alpha;
    c.dropout = dropout;
    c.target_modules = std::move(targets);
    c.seed = seed;
    return add_lora(*pm.model, c);
  }, nb::arg("model"), nb::arg("rank") = 8, nb::arg("alpha") = 16.0, nb::arg("dropout") = 0.0,
     nb::arg("target_modules") = std::vector<std::string>{"q_proj", "v_proj"}, nb::arg("seed") = 0);
  m.def("lora_parameter_names", [](PyModel& pm) { return lora_parameter_names(*pm.model); });
}

}  // namespace mlxgp::py
