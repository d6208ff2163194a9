// Sampling warpers after top_p (transformers MinPLogitsWarper, TypicalLogitsWarper,
// EpsilonLogitsWarper, EtaLogitsWarper) and the numeric processors InfNanRemoveLogitsProcessor
// and LogitNormalization. All device ops on [B, V].
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <span>
#include <vector>

#include "generation/processors/common.h"
#include "generation/processors/mass_cutoff.h"
#include "generation/processors/row_kernels.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

using processors::neg_inf;

// Thread-local scratch for the row kernels (they run on MLX's CPU worker thread).
struct RowScratch {
  std::vector<float> probs, values;
  std::vector<int> idx;
  std::unique_ptr<bool[]> remove;
  size_t cap = 0;
  bool* mask(size_t n) {
    if (cap < n) remove.reset(new bool[cap = n]);
    return remove.get();
  }
};
RowScratch& scratch() {
  thread_local RowScratch s;
  return s;
}

// Row form of below_kth: x < the k-th largest of `values` (k clamped to [1, V]).
float kth_limit(std::span<const float> values, int k, std::vector<float>& tmp) {
  k = std::max(1, std::min(k, static_cast<int>(values.size())));
  return processors::kth_largest(values, k, tmp);
}

// HF keeps the min_tokens_to_keep largest scores: remove only below the k-th largest.
mx::array below_kth(const mx::array& scores, int k) {
  k = std::max(1, std::min(k, scores.shape(-1)));
  if (k == 1) return mx::less(scores, mx::max(scores, -1, true));  // the usual case: no top-k partition
  auto kth = mx::min(mx::topk(scores, k, -1), -1, true);
  return mx::less(scores, kth);
}

class MinP : public LogitsProcessor {
 public:
  MinP(double p, int keep) : p_(p), keep_(keep) {
    if (!(p >= 0 && p <= 1)) fail("config", "min_p must be in [0, 1]");
  }
  mx::array apply(const mx::array& logits, const mx::array&) override {
    auto probs = mx::softmax(logits, -1, true);
    auto top = mx::max(probs, -1, true);
    auto remove = mx::less(probs, mx::multiply(mx::array(static_cast<float>(p_)), top));
    // HF un-removes the top-k probabilities (k = min_tokens_to_keep).
    remove = mx::logical_and(remove, below_kth(probs, keep_));
    return mx::where(remove, neg_inf(), logits);
  }
  std::optional<RowKernel> row_kernel(int, int) override {
    return [p = static_cast<float>(p_), keep = keep_](std::span<float> x, std::span<const int32_t>) {
      auto& s = scratch();
      processors::softmax_row(x, s.probs);
      const float top = *std::max_element(s.probs.begin(), s.probs.end());
      const float cut = p * top;
      const float kth = keep <= 1 ? top : kth_limit(s.probs, keep, s.values);
      for (size_t i = 0; i < x.size(); ++i)
        if (s.probs[i] < cut && s.probs[i] < kth) x[i] = -INFINITY;
    };
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<MinP>(*this); }

 private:
  double p_;
  int keep_;
};

class Typical : public LogitsProcessor {
 public:
  Typical(double mass, int keep) : mass_(mass), keep_(keep) {
    if (!(mass > 0 && mass < 1)) fail("config", "typical_p must be in (0, 1)");
  }
  mx::array apply(const mx::array& logits, const mx::array&) override {
    const int v = logits.shape(-1);
    auto logp = mx::subtract(logits, mx::logsumexp(logits, -1, true));
    auto p = mx::exp(logp);
    auto plogp = mx::multiply(logp, p);
    plogp = mx::where(mx::isnan(plogp), mx::array(0.0f), plogp);  // HF nansum: -inf * 0 terms drop out
    auto ent = mx::negative(mx::sum(plogp, -1, true));
    auto shifted = mx::abs(mx::subtract(mx::negative(logp), ent));
    if (processors::mass_cutoff_on_cpu(logits)) {
      auto remove =
          processors::typical_remove_mask(shifted, mx::softmax(logits, -1, true), static_cast<float>(mass_), keep_);
      return mx::where(remove, neg_inf(), logits);
    }
    auto order = mx::argsort(shifted, -1);
    auto sorted_shift = mx::take_along_axis(shifted, order, -1);
    auto sorted_logits = mx::take_along_axis(logits, order, -1);
    auto cum = mx::cumsum(mx::softmax(sorted_logits, -1, true), -1);
    auto last = mx::sum(mx::less(cum, mx::array(static_cast<float>(mass_))), -1, true);
    last = mx::minimum(mx::astype(last, mx::int32), mx::array(v - 1, mx::int32));
    auto limit = mx::take_along_axis(sorted_shift, last, -1);
    auto remove = mx::greater(sorted_shift, limit);
    remove = mx::logical_and(remove, mx::greater_equal(mx::arange(v), mx::array(std::min(keep_, v))));
    auto remove_vocab = mx::put_along_axis(mx::zeros(logits.shape(), mx::bool_), order, remove, -1);
    return mx::where(remove_vocab, neg_inf(), logits);
  }
  std::optional<RowKernel> row_kernel(int, int) override {
    return [mass = static_cast<float>(mass_), keep = keep_](std::span<float> x, std::span<const int32_t>) {
      auto& s = scratch();
      const int v = static_cast<int>(x.size());
      const float lse = processors::logsumexp_row(x);
      s.values.resize(v);
      float plogp = 0.0f;  // HF nansum: -inf * 0 terms drop out
      for (int i = 0; i < v; ++i) {
        const float logp = x[i] - lse;
        s.values[i] = logp;
        if (x[i] != -INFINITY) plogp += logp * std::exp(logp);
      }
      const float ent = -plogp;
      for (auto& f : s.values) f = std::fabs(-f - ent);  // the shift; inf for -inf logits
      processors::softmax_row(x, s.probs);
      bool* remove = s.mask(v);
      processors::typical_remove_row(s.values.data(), s.probs.data(), remove, v, mass, keep, s.idx);
      for (int i = 0; i < v; ++i)
        if (remove[i]) x[i] = -INFINITY;
    };
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<Typical>(*this); }

 private:
  double mass_;
  int keep_;
};

// Epsilon (fixed cutoff) and eta (entropy-dependent cutoff) sampling.
class Cutoff : public LogitsProcessor {
 public:
  Cutoff(double eps, int keep, bool eta) : eps_(eps), keep_(keep), eta_(eta) {
    if (!(eps > 0 && eps < 1))
      fail("config", std::string(eta ? "eta_cutoff" : "epsilon_cutoff") + " must be in (0, 1)");
  }
  mx::array apply(const mx::array& logits, const mx::array&) override {
    auto probs = mx::softmax(logits, -1, true);
    mx::array cut = mx::array(static_cast<float>(eps_));
    if (eta_) {
      // torch Categorical(logits).entropy(): normalised logits clamped to the lowest finite float.
      auto logp = mx::subtract(logits, mx::logsumexp(logits, -1, true));
      logp = mx::maximum(logp, mx::array(std::numeric_limits<float>::lowest()));
      auto ent = mx::negative(mx::sum(mx::multiply(logp, probs), -1, true));
      auto e = mx::array(static_cast<float>(eps_));
      cut = mx::minimum(e, mx::multiply(mx::sqrt(e), mx::exp(mx::negative(ent))));
    }
    auto remove = mx::logical_and(mx::less(probs, cut), below_kth(logits, keep_));
    return mx::where(remove, neg_inf(), logits);
  }
  std::optional<RowKernel> row_kernel(int, int) override {
    return [eps = static_cast<float>(eps_), keep = keep_, eta = eta_](std::span<float> x, std::span<const int32_t>) {
      auto& s = scratch();
      processors::softmax_row(x, s.probs);
      float cut = eps;
      if (eta) {
        const float lse = processors::logsumexp_row(x);
        float sum = 0.0f;
        for (size_t i = 0; i < x.size(); ++i)
          sum += std::max(x[i] - lse, std::numeric_limits<float>::lowest()) * s.probs[i];
        cut = std::min(eps, std::sqrt(eps) * std::exp(sum));  // exp(-entropy), entropy = -sum
      }
      const float kth = keep <= 1 ? *std::max_element(x.begin(), x.end()) : kth_limit(x, keep, s.values);
      for (size_t i = 0; i < x.size(); ++i)
        if (s.probs[i] < cut && x[i] < kth) x[i] = -INFINITY;
    };
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<Cutoff>(*this); }

 private:
  double eps_;
  int keep_;
  bool eta_;
};

class RemoveInvalid : public LogitsProcessor {
 public:
  mx::array apply(const mx::array& x, const mx::array&) override {
    auto out = mx::where(mx::isnan(x), mx::array(0.0f, x.dtype()), x);
    out = mx::where(mx::isposinf(x), mx::array(std::numeric_limits<float>::max(), x.dtype()), out);
    return mx::where(mx::isneginf(x), mx::array(std::numeric_limits<float>::lowest(), x.dtype()), out);
  }
  std::optional<RowKernel> row_kernel(int, int) override {
    return [](std::span<float> x, std::span<const int32_t>) {
      for (auto& f : x) {
        if (std::isnan(f)) f = 0.0f;
        else if (f == INFINITY) f = std::numeric_limits<float>::max();
        else if (f == -INFINITY) f = std::numeric_limits<float>::lowest();
      }
    };
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<RemoveInvalid>(*this); }
};

class Renormalize : public LogitsProcessor {
 public:
  mx::array apply(const mx::array& x, const mx::array&) override {
    return mx::subtract(x, mx::logsumexp(x, -1, true));  // log_softmax
  }
  std::optional<RowKernel> row_kernel(int, int) override {
    return [](std::span<float> x, std::span<const int32_t>) {
      const float lse = processors::logsumexp_row(x);
      for (auto& f : x) f -= lse;
    };
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<Renormalize>(*this); }
};

}  // namespace

std::unique_ptr<LogitsProcessor> make_min_p_warper(double min_p, int keep) {
  return std::make_unique<MinP>(min_p, keep);
}
std::unique_ptr<LogitsProcessor> make_typical_warper(double mass, int keep) {
  return std::make_unique<Typical>(mass, keep);
}
std::unique_ptr<LogitsProcessor> make_epsilon_warper(double eps, int keep) {
  return std::make_unique<Cutoff>(eps, keep, false);
}
std::unique_ptr<LogitsProcessor> make_eta_warper(double eps, int keep) {
  return std::make_unique<Cutoff>(eps, keep, true);
}
std::unique_ptr<LogitsProcessor> make_remove_invalid_values() { return std::make_unique<RemoveInvalid>(); }
std::unique_ptr<LogitsProcessor> make_renormalize() { return std::make_unique<Renormalize>(); }

}  // namespace mlxgp
