// AdamW and SGD with torch.optim's update rules, global-norm clipping, learning-rate schedules.
#include "mlxgp/optimizer.h"

#include <cmath>
#include <numbers>

#include <mlx/mlx.h>

#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

mx::array scalar(double x) { return mx::array(static_cast<float>(x)); }

class AdamW : public Optimizer {
 public:
  explicit AdamW(AdamWOptions o) : o_(o) {
    if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1))
      fail("train", "AdamW betas must be in [0, 1)");
    if (!(o.eps > 0) || !std::isfinite(static_cast<float>(o.eps))) fail("train", "AdamW eps must be finite and > 0");
    if (!(o.weight_decay >= 0) || !std::isfinite(static_cast<float>(o.weight_decay)))
      fail("train", "weight decay must be a finite number >= 0");
  }
  std::string name() const override { return "adamw"; }

  void step(WeightMap& params, const WeightMap& grads, double lr) override {
    ++steps_;
    const double bc1 = 1.0 - std::pow(o_.beta1, steps_), bc2 = 1.0 - std::pow(o_.beta2, steps_);
    for (auto& [name, g] : grads) {
      auto it = params.find(name);
      if (it == params.end()) fail("train", "gradient for unknown parameter '" + name + "'");
      auto& p = it->second;
      auto m = m_.count(name) ? m_.at(name) : mx::zeros_like(p);
      auto v = v_.count(name) ? v_.at(name) : mx::zeros_like(p);
      if (o_.weight_decay != 0) p = mx::multiply(p, scalar(1.0 - lr * o_.weight_decay));
      m = mx::add(mx::multiply(m, scalar(o_.beta1)), mx::multiply(g, scalar(1.0 - o_.beta1)));
      v = mx::add(mx::multiply(v, scalar(o_.beta2)), mx::multiply(mx::square(g), scalar(1.0 - o_.beta2)));
      auto denom = mx::add(mx::divide(mx::sqrt(v), scalar(std::sqrt(bc2))), scalar(o_.eps));
      p = mx::subtract(p, mx::multiply(scalar(lr / bc1), mx::divide(m, denom)));
      m_.insert_or_assign(name, m);
      v_.insert_or_assign(name, v);
    }
  }

  WeightMap state() const override {
    WeightMap s;
    for (auto& [k, a] : m_) s.insert_or_assign(k + ".exp_avg", a);
    for (auto& [k, a] : v_) s.insert_or_assign(k + ".exp_avg_sq", a);
    return s;
  }

  void load_state(const WeightMap& state, int steps) override {
    m_.clear();
    v_.clear();
    for (auto& [k, a] : state) {
      auto dot = k.rfind('.');
      auto base = k.substr(0, dot), slot = dot == std::string::npos ? "" : k.substr(dot + 1);
      if (slot == "exp_avg") m_.insert_or_assign(base, a);
      else if (slot == "exp_avg_sq" && !mx::all(mx::greater_equal(a, mx::array(0.0f))).item<bool>())
        fail("train", "optimizer state entry '" + k + "' holds negative values (a second moment is >= 0)");
      else if (slot == "exp_avg_sq") v_.insert_or_assign(base, a);
      else fail("train", "optimizer state entry '" + k + "' is not AdamW state");
    }
    steps_ = steps;
  }

 private:
  AdamWOptions o_;
  WeightMap m_, v_;
};

class Sgd : public Optimizer {
 public:
  explicit Sgd(SgdOptions o) : o_(o) {
    auto finite = [](double x) { return std::isfinite(static_cast<float>(x)); };
    if (!(o.momentum >= 0) || !finite(o.momentum)) fail("train", "SGD momentum must be a finite number >= 0");
    if (!finite(o.dampening)) fail("train", "SGD dampening must be a finite number");
    if (!(o.weight_decay >= 0) || !finite(o.weight_decay)) fail("train", "weight decay must be a finite number >= 0");
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
      fail("train", "Nesterov momentum requires a momentum and zero dampening");
  }
  std::string name() const override { return "sgd"; }

  void step(WeightMap& params, const WeightMap& grads, double lr) override {
    ++steps_;
    for (auto& [name, g0] : grads) {
      auto it = params.find(name);
      if (it == params.end()) fail("train", "gradient for unknown parameter '" + name + "'");
      auto& p = it->second;
      auto g = o_.weight_decay != 0 ? mx::add(g0, mx::multiply(p, scalar(o_.weight_decay))) : g0;
      if (o_.momentum != 0) {
        auto bit = buf_.find(name);
        // torch: the first step's buffer is the gradient itself (no dampening).
        auto b = bit == buf_.end() ? g
                                   : mx::add(mx::multiply(bit->second, scalar(o_.momentum)),
                                             mx::multiply(g, scalar(1.0 - o_.dampening)));
        buf_.insert_or_assign(name, b);
        g = o_.nesterov ? mx::add(g, mx::multiply(b, scalar(o_.momentum))) : b;
      }
      p = mx::subtract(p, mx::multiply(g, scalar(lr)));
    }
  }

  WeightMap state() const override {
    WeightMap s;
    for (auto& [k, a] : buf_) s.insert_or_assign(k + ".momentum_buffer", a);
    return s;
  }

  void load_state(const WeightMap& state, int steps) override {
    buf_.clear();
    const std::string suffix = ".momentum_buffer";
    for (auto& [k, a] : state) {
      if (k.size() <= suffix.size() || k.compare(k.size() - suffix.size(), suffix.size(), suffix) != 0)
        fail("train", "optimizer state entry '" + k + "' is not SGD state");
      buf_.insert_or_assign(k.substr(0, k.size() - suffix.size()), a);
    }
    steps_ = steps;
  }

 private:
  SgdOptions o_;
  WeightMap buf_;
};

}  // namespace

namespace {

struct StateSnapshot : Optimizer::Snapshot {
  WeightMap state;
  int steps = 0;
};

}  // namespace

std::unique_ptr<Optimizer::Snapshot> Optimizer::snapshot() const {
  auto s = std::make_unique<StateSnapshot>();
  s->state = state();
  s->steps = steps_;
  return s;
}

void Optimizer::restore(const Snapshot& snapshot) {
  const auto* s = dynamic_cast<const StateSnapshot*>(&snapshot);
  if (!s) fail("train", name() + ": a snapshot of another optimizer cannot be restored");
  load_state(s->state, s->steps);
}

std::unique_ptr<Optimizer> make_adamw(AdamWOptions options) { return std::make_unique<AdamW>(options); }
std::unique_ptr<Optimizer> make_sgd(SgdOptions options) { return std::make_unique<Sgd>(options); }

mx::array grad_norm(const WeightMap& grads) {
  std::vector<mx::array> sq;
  for (auto& [k, g] : grads) sq.push_back(mx::sum(mx::square(mx::astype(g, mx::float32))));
  if (sq.empty()) return mx::array(0.0f);
  return mx::sqrt(mx::sum(mx::stack(sq)));
}

mx::array clip_grad_norm(WeightMap& grads, double max_norm) {
  if (!(max_norm > 0)) fail("train", "max_grad_norm must be > 0");
  if (grads.empty()) return mx::array(0.0f);
  auto total = grad_norm(grads);
  auto coef = mx::minimum(mx::divide(scalar(max_norm), mx::add(total, scalar(1e-6))), scalar(1.0));
  for (auto& [k, g] : grads) g = mx::multiply(g, mx::astype(coef, g.dtype()));
  return total;
}

double LrSchedule::at(int step) const {
  if (warmup_steps > 0 && step < warmup_steps) return lr * static_cast<double>(step) / warmup_steps;
  if (kind == Kind::Constant) return lr;
  const int span = std::max(1, total_steps - warmup_steps);
  const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
  if (kind == Kind::Linear) return lr * std::max(0.0, 1.0 - progress);
  return lr * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

LrSchedule::Kind parse_lr_schedule(const std::string& text) {
  if (text == "constant") return LrSchedule::Kind::Constant;
  if (text == "cosine") return LrSchedule::Kind::Cosine;
  if (text == "linear") return LrSchedule::Kind::Linear;
  fail("train", "unknown learning-rate schedule '" + text + "' (constant, cosine, linear)");
}

}  // namespace mlxgp
