// The sampling warpers (transformers TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper).
// Each works on logits [B, V] with device ops only; filtered tokens get -inf (HF filter_value).
#include <cmath>
#include <limits>

#include <mlx/mlx.h>

#include "generation/processors/mass_cutoff.h"
#include "generation/processors/row_kernels.h"
#include "mlxgp/error.h"
#include "mlxgp/logits_processor.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

mx::array neg_inf() { return mx::array(-std::numeric_limits<float>::infinity()); }

class TemperatureWarper : public LogitsProcessor {
 public:
  explicit TemperatureWarper(double t) : t_(t) {
    if (!(t > 0) || !std::isfinite(t)) fail("config", "temperature must be a finite number > 0 for sampling");
  }
  mx::array apply(const mx::array& logits, const mx::array&) override {
    // HF divides by the Python float; torch casts the scalar to the logits' dtype first.
    return mx::divide(logits, mx::array(static_cast<float>(t_), logits.dtype()));
  }
  std::optional<RowKernel> row_kernel(int, int) override {
    return [t = static_cast<float>(t_)](std::span<float> x, std::span<const int32_t>) {
      for (auto& f : x) f /= t;
    };
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<TemperatureWarper>(*this); }

 private:
  double t_;
};

class TopKWarper : public LogitsProcessor {
 public:
  TopKWarper(int k, int min_keep) : k_(std::max(k, min_keep)) {
    if (k <= 0) fail("config", "top_k must be > 0 for the top-k warper");
  }
  mx::array apply(const mx::array& logits, const mx::array&) override {
    int v = logits.shape(-1);
    int k = std::min(k_, v);  // HF's safety check
    if (k >= v) return logits;
    // Keep every logit >= the k-th largest (torch.topk(...)[0][..., -1]): ties with it survive, as in HF.
    auto kth = mx::min(mx::topk(logits, k, -1), -1, /*keepdims=*/true);
    return mx::where(mx::less(logits, kth), neg_inf(), logits);
  }
  std::optional<RowKernel> row_kernel(int vocab, int) override {
    const int k = std::min(k_, vocab);
    if (k >= vocab) return RowKernel{};
    return [k](std::span<float> x, std::span<const int32_t>) {
      thread_local std::vector<float> scratch;
      const float kth = processors::kth_largest(x, k, scratch);
      for (auto& f : x)
        if (f < kth) f = -INFINITY;
    };
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<TopKWarper>(*this); }

 private:
  int k_;
};

class TopPWarper : public LogitsProcessor {
 public:
  TopPWarper(double p, int min_keep) : p_(p), min_keep_(min_keep) {
    if (!(p > 0 && p <= 1)) fail("config", "top_p must be in (0, 1]");
  }
  mx::array apply(const mx::array& logits, const mx::array&) override {
    int v = logits.shape(-1);
    const float limit = static_cast<float>(1.0 - p_);
    if (processors::mass_cutoff_on_cpu(logits)) {
      auto remove = processors::top_p_remove_mask(logits, mx::softmax(logits, -1, /*precise=*/true), limit, min_keep_);
      return mx::where(remove, neg_inf(), logits);
    }
    // HF: sort ascending, softmax, cumsum; drop sorted positions whose cumulative probability is
    // <= 1 - top_p, except the last min_tokens_to_keep (the most likely ones).
    auto order = mx::argsort(logits, -1);
    auto sorted = mx::take_along_axis(logits, order, -1);
    auto cum = mx::cumsum(mx::softmax(sorted, -1, /*precise=*/true), -1);
    auto threshold = mx::array(limit, cum.dtype());
    auto remove = mx::less_equal(cum, threshold);
    auto position = mx::arange(0, v);
    remove = mx::logical_and(remove, mx::less(position, mx::array(v - std::min(min_keep_, v))));
    // Scatter the mask back to vocabulary order.
    auto remove_vocab = mx::put_along_axis(mx::zeros(logits.shape(), mx::bool_), order, remove, -1);
    return mx::where(remove_vocab, neg_inf(), logits);
  }
  std::optional<RowKernel> row_kernel(int, int) override {
    return [limit = static_cast<float>(1.0 - p_), keep = min_keep_](std::span<float> x, std::span<const int32_t>) {
      thread_local std::vector<float> probs;
      thread_local std::vector<int> idx;
      thread_local std::unique_ptr<bool[]> remove;
      thread_local size_t cap = 0;
      const int v = static_cast<int>(x.size());
      if (cap < x.size()) remove.reset(new bool[cap = x.size()]);
      processors::softmax_row(x, probs);
      processors::top_p_remove_row(x.data(), probs.data(), remove.get(), v, limit, keep, idx);
      for (int i = 0; i < v; ++i)
        if (remove[i]) x[i] = -INFINITY;
    };
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<TopPWarper>(*this); }

 private:
  double p_;
  int min_keep_;
};

}  // namespace

std::unique_ptr<LogitsProcessor> make_temperature_warper(double temperature) {
  return std::make_unique<TemperatureWarper>(temperature);
}
std::unique_ptr<LogitsProcessor> make_top_k_warper(int top_k, int min_tokens_to_keep) {
  return std::make_unique<TopKWarper>(top_k, min_tokens_to_keep);
}
std::unique_ptr<LogitsProcessor> make_top_p_warper(double top_p, int min_tokens_to_keep) {
  return std::make_unique<TopPWarper>(top_p, min_tokens_to_keep);
}

}  // namespace mlxgp
