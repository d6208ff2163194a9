// Training: losses, the project's AdamW / SGD as a TrainState (masters, moments, loss scaler kept between
// calls), train_step, and LoRA adapters.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unordered_map.h>
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

Batch batch_of(const mx::array& input_ids, std::optional<mx::array> labels, std::optional<mx::array> loss_mask,
               std::optional<mx::array> attention_mask) {
  if (input_ids.ndim() != 2) fail("train", "input_ids must be [batch, length]");
  // Not cast: loss_forward refuses float ids and labels, and ids outside int32, rather than truncate them.
  return Batch{input_ids, std::move(labels), std::move(loss_mask), std::move(attention_mask)};
}

// The training dtype by its full name or the short forms (fp32, bf16, fp16).
mx::Dtype training_dtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return mx::float32;
  if (name == "bfloat16" || name == "bf16") return mx::bfloat16;
  if (name == "float16" || name == "fp16") return mx::float16;
  fail("train", "unknown dtype '" + name + "' (supported: float32 / fp32, bfloat16 / bf16, float16 / fp16)");
}

std::string dtype_name(mx::Dtype t) {
  if (t == mx::bfloat16) return "bfloat16";
  if (t == mx::float16) return "float16";
  return "float32";
}

// loss_scale: None (off), a number (that static scale), or "none" | "static" | "dynamic" (with `value`).
LossScaleConfig loss_scale_of(const nb::object& spec, double value) {
  LossScaleConfig s;
  s.scale = value;
  if (spec.is_none()) return s;
  if (nb::isinstance<nb::str>(spec)) {
    auto text = nb::cast<std::string>(spec);
    if (text == "none") s.kind = LossScaleConfig::Kind::None;
    else if (text == "static") s.kind = LossScaleConfig::Kind::Static;
    else if (text == "dynamic") s.kind = LossScaleConfig::Kind::Dynamic;
    else fail("train", "loss_scale must be None, a number, 'dynamic', 'static' or 'none', got '" + text + "'");
    return s;
  }
  if (nb::isinstance<bool>(spec) || !(nb::isinstance<nb::float_>(spec) || nb::isinstance<nb::int_>(spec)))
    fail("train", "loss_scale must be None, a number, 'dynamic', 'static' or 'none'");
  s.kind = LossScaleConfig::Kind::Static;
  s.scale = nb::cast<double>(spec);
  if (!(s.scale > 0)) fail("train", "a static loss_scale must be > 0");
  return s;
}

// An mlx.optimizers.Optimizer behind the Trainer: each step hands the float32 masters and gradients (by
// parameter name) to its apply_gradients() and takes the updated masters back. The optimizer keeps its
// own state and learning rate (schedules included). The handle is borrowed: the optimizer owns the
// TrainState that owns this object.
class PythonOptimizer : public Optimizer {
 public:
  explicit PythonOptimizer(nb::handle optimizer)
      : optimizer_(optimizer), name_(nb::cast<std::string>(nb::type_name(optimizer.type()))) {}
  void step(WeightMap& params, const WeightMap& grads, double) override {
    nb::gil_scoped_acquire gil;
    nb::dict g, p;
    for (auto& [name, grad] : grads) {
      auto it = params.find(name);
      if (it == params.end()) continue;
      g[nb::str(name.c_str())] = nb::cast(grad);
      p[nb::str(name.c_str())] = nb::cast(it->second);
    }
    nb::object updated = optimizer_.attr("apply_gradients")(g, p);
    for (auto [name, value] : nb::cast<nb::dict>(updated))
      params.insert_or_assign(nb::cast<std::string>(name), nb::cast<mx::array>(value));
    ++steps_;
  }
  // The optimizer's state arrays (moments, step), so the Trainer evaluates them with the masters. A
  // checkpoint of them cannot be loaded back here (load_state): save optimizer.state with mlx instead.
  WeightMap state() const override {
    nb::gil_scoped_acquire gil;
    WeightMap out;
    nb::object flat = nb::module_::import_("mlx.utils").attr("tree_flatten")(optimizer_.attr("state"));
    for (nb::handle item : flat) {
      auto pair = nb::cast<nb::tuple>(item);
      if (nb::isinstance<mx::array>(pair[1]))
        out.insert_or_assign(nb::cast<std::string>(pair[0]), nb::cast<mx::array>(pair[1]));
    }
    return out;
  }
  void load_state(const WeightMap&, int) override {
    fail("train", name_ + ": an mlx.optimizers optimizer keeps its own state (load optimizer.state with mlx)");
  }
  std::string name() const override { return name_; }
  // The state tree copied container by container (its arrays are immutable, and apply_gradients replaces
  // them in the dicts it mutates), so an undone update puts the optimizer back exactly.
  struct TreeSnapshot : Snapshot {
    nb::object tree;
    int steps = 0;
    ~TreeSnapshot() override {
      nb::gil_scoped_acquire gil;
      tree.reset();
    }
  };
  std::unique_ptr<Snapshot> snapshot() const override {
    nb::gil_scoped_acquire gil;
    auto s = std::make_unique<TreeSnapshot>();
    nb::object identity = nb::cpp_function([](nb::handle x) { return nb::borrow(x); });
    s->tree = nb::module_::import_("mlx.utils").attr("tree_map")(identity, optimizer_.attr("state"));
    s->steps = steps_;
    return s;
  }
  void restore(const Snapshot& snapshot) override {
    const auto* s = dynamic_cast<const TreeSnapshot*>(&snapshot);
    if (!s) fail("train", name_ + ": a snapshot of another optimizer cannot be restored");
    nb::gil_scoped_acquire gil;
    nb::object identity = nb::cpp_function([](nb::handle x) { return nb::borrow(x); });
    optimizer_.attr("state") = nb::module_::import_("mlx.utils").attr("tree_map")(identity, s->tree);
    steps_ = s->steps;
  }

 private:
  nb::handle optimizer_;
  std::string name_;
};

}  // namespace

void bind_training(nb::module_& m) {
  nb::class_<TrainingConfig>(m, "TrainingConfig", "how train_step computes and applies gradients")
      .def(
          "__init__",
          [](TrainingConfig* self, const std::string& dtype, double label_smoothing, double max_grad_norm,
             nb::object loss_scale, double loss_scale_value, std::vector<std::string> trainable,
             std::optional<mx::distributed::Group> group) {
            auto* c = new (self) TrainingConfig();
            c->group = std::move(group);
            c->dtype = training_dtype(dtype);
            c->label_smoothing = label_smoothing;
            c->max_grad_norm = max_grad_norm;
            c->loss_scale = loss_scale_of(loss_scale, loss_scale_value);
            c->trainable = std::move(trainable);
          },
          nb::arg("dtype") = "float32", nb::arg("label_smoothing") = 0.0, nb::arg("max_grad_norm") = 0.0,
          nb::arg("loss_scale").none() = nb::none(), nb::arg("loss_scale_value") = 65536.0,
          nb::arg("trainable") = std::vector<std::string>{}, nb::arg("group").none() = nb::none(),
          "dtype: float32 | bfloat16 | float16 (or fp32 | bf16 | fp16); loss_scale: None, a number (a static "
          "scale), 'dynamic' (starting at loss_scale_value), or 'none' / 'static'; group: an "
          "mlx.core.distributed.Group for data parallelism (each rank passes its share of the batch; "
          "gradients, losses and token counts are summed over the group)")
      .def_prop_ro("group", [](const TrainingConfig& c) { return c.group; })
      .def_prop_ro("dtype", [](const TrainingConfig& c) { return dtype_name(c.dtype); })
      .def_prop_ro("loss_scale",
                   [](const TrainingConfig& c) -> nb::object {
                     switch (c.loss_scale.kind) {
                       case LossScaleConfig::Kind::None:
                         return nb::none();
                       case LossScaleConfig::Kind::Static:
                         return nb::float_(c.loss_scale.scale);
                       case LossScaleConfig::Kind::Dynamic:
                         break;
                     }
                     return nb::str("dynamic");
                   })
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
  m.def(
      "make_adamw",
      [](double lr, double beta1, double beta2, double eps, double weight_decay, const std::string& schedule,
         int warmup, int total) {
        auto opt = make_adamw(AdamWOptions{beta1, beta2, eps, weight_decay});
        return PyTrainState{std::make_unique<TrainState>(std::move(opt), schedule_of(lr, schedule, warmup, total)),
                            "AdamW"};
      },
      nb::arg("lr"), nb::arg("beta1"), nb::arg("beta2"), nb::arg("eps"), nb::arg("weight_decay"), nb::arg("schedule"),
      nb::arg("warmup_steps"), nb::arg("total_steps"));
  m.def(
      "make_sgd",
      [](double lr, double momentum, double weight_decay, bool nesterov, const std::string& schedule, int warmup,
         int total) {
        SgdOptions o;
        o.momentum = momentum;
        o.weight_decay = weight_decay;
        o.nesterov = nesterov;
        return PyTrainState{std::make_unique<TrainState>(make_sgd(o), schedule_of(lr, schedule, warmup, total)), "SGD"};
      },
      nb::arg("lr"), nb::arg("momentum"), nb::arg("weight_decay"), nb::arg("nesterov"), nb::arg("schedule"),
      nb::arg("warmup_steps"), nb::arg("total_steps"));

  m.def(
      "make_python_optimizer",
      [](nb::handle optimizer) {
        auto opt = std::make_unique<PythonOptimizer>(optimizer);
        auto name = opt->name();
        return PyTrainState{std::make_unique<TrainState>(std::move(opt)), name};
      },
      nb::arg("optimizer"), "a TrainState stepping through an mlx.optimizers.Optimizer (kept alive by the caller)");

  m.def(
      "train_step",
      [](PyModel& pm, const mx::array& input_ids, std::optional<mx::array> labels, std::optional<mx::array> loss_mask,
         PyTrainState& state, const TrainingConfig& config, const std::vector<std::shared_ptr<Hook>>& hooks,
         std::optional<int> pad_id, std::optional<mx::array> attention_mask) {
        Batch batch = batch_of(input_ids, std::move(labels), std::move(loss_mask), std::move(attention_mask));
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
        if (r.aux_loss) d["aux_loss"] = *r.aux_loss;
        return d;
      },
      nb::arg("model"), nb::arg("input_ids"), nb::arg("labels").none(), nb::arg("loss_mask").none(), nb::arg("state"),
      nb::arg("config"), nb::arg("hooks"), nb::arg("pad_id").none(), nb::arg("attention_mask").none() = nb::none());

  m.def(
      "loss_forward",
      [](PyModel& pm, const mx::array& input_ids, std::optional<mx::array> labels, std::optional<mx::array> loss_mask,
         double label_smoothing, std::optional<int> pad_id, std::optional<mx::array> attention_mask) {
        Batch batch = batch_of(input_ids, std::move(labels), std::move(loss_mask), std::move(attention_mask));
        nb::gil_scoped_release release;
        auto r = loss_forward(*pm.model, batch, label_smoothing, pad_id);
        mx::eval(r.loss, r.n_tokens);
        return std::make_pair(r.loss, r.n_tokens);
      },
      nb::arg("model"), nb::arg("input_ids"), nb::arg("labels").none(), nb::arg("loss_mask").none(),
      nb::arg("label_smoothing") = 0.0, nb::arg("pad_id").none() = nb::none(),
      nb::arg("attention_mask").none() = nb::none());

  m.def(
      "xent_loss",
      [](const mx::array& logits, const mx::array& targets, double label_smoothing, int ignore_index) {
        auto r = xent_loss(logits, targets, label_smoothing, ignore_index);
        return std::make_pair(r.loss, r.n_tokens);
      },
      nb::arg("logits"), nb::arg("targets"), nb::arg("label_smoothing") = 0.0, nb::arg("ignore_index") = -100);

  m.def(
      "add_lora",
      [](PyModel& pm, int rank, double alpha, double dropout, std::vector<std::string> targets, uint64_t seed) {
        LoraConfig c;
        c.rank = rank;
        c.alpha = alpha;
        c.dropout = dropout;
        c.target_modules = std::move(targets);
        c.seed = seed;
        return add_lora(*pm.model, c);
      },
      nb::arg("model"), nb::arg("rank") = 8, nb::arg("alpha") = 16.0, nb::arg("dropout") = 0.0,
      nb::arg("target_modules") = std::vector<std::string>{"q_proj", "v_proj"}, nb::arg("seed") = 0);
  m.def("lora_parameter_names", [](PyModel& pm) { return lora_parameter_names(*pm.model); });
}

}  // namespace mlxgp::py
