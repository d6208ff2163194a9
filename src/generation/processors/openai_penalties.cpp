// OpenAI / vLLM sampling penalties (no transformers class exists): presence_penalty and
// frequency_penalty over the GENERATED tokens only (vLLM's output_token_ids; the prompt does not
// count), and a per-token logit_bias map.
#include <algorithm>
#include <map>
#include <string>

#include "generation/processors/common.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

// logits -= frequency * count + presence * (count > 0)   (vLLM apply_penalties / OpenAI docs). Counts
// come from the ids after the prompt, so the processor has no state of its own and follows rows that
// beam search reorders or speculative decoding rolls back.
class PresenceFrequencyPenalty : public LogitsProcessor {
 public:
  PresenceFrequencyPenalty(double presence, double frequency) : presence_(presence), frequency_(frequency) {}

  void on_prompt(const mx::array& ids) override { prompt_len_ = ids.shape(1); }
  mx::array apply(const mx::array& logits, const mx::array& ids) override {
    const int b = logits.shape(0), v = logits.shape(-1), t = ids.ndim() == 2 ? ids.shape(1) : 0;
    if (t <= prompt_len_) return logits;
    // Generated ids outside [0, V) carry no weight (user-fed ids in process-logits), as ids_mask drops them.
    auto gen = mx::astype(mx::slice(ids, {0, prompt_len_}, {b, t}), mx::int32);
    auto inside = mx::logical_and(mx::greater_equal(gen, mx::array(0)), mx::less(gen, mx::array(v)));
    auto idx = mx::where(inside, gen, mx::array(0));
    auto counts = mx::scatter_add_axis(mx::zeros({b, v}, mx::float32), idx, mx::astype(inside, mx::float32), 1);
    // One penalty array per step: frequency * count + presence * [count > 0].
    auto penalty = mx::where(mx::greater(counts, mx::array(0.0f)),
                             mx::add(mx::multiply(counts, mx::array(static_cast<float>(frequency_))),
                                     mx::array(static_cast<float>(presence_))),
                             mx::array(0.0f));
    return mx::subtract(logits, penalty);
  }
  std::optional<RowKernel> row_kernel(int, int num_ids) override {
    if (num_ids <= prompt_len_) return RowKernel{};
    return [start = prompt_len_, f = static_cast<float>(frequency_), p = static_cast<float>(presence_)](
               std::span<float> x, std::span<const int32_t> ids) {
      thread_local std::vector<int32_t> gen;
      gen.assign(ids.begin() + start, ids.end());
      std::sort(gen.begin(), gen.end());
      const int v = static_cast<int>(x.size());
      for (size_t i = 0; i < gen.size();) {
        size_t j = i;
        while (j < gen.size() && gen[j] == gen[i]) ++j;
        if (gen[i] >= 0 && gen[i] < v) x[gen[i]] -= static_cast<float>(j - i) * f + p;
        i = j;
      }
    };
  }
  bool needs_ids() const override { return true; }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<PresenceFrequencyPenalty>(*this); }

 private:
  double presence_, frequency_;
  int prompt_len_ = 0;
};

// OpenAI logit_bias: a fixed bias added to each listed token's logit every step. A token listed twice
// keeps its last bias (a JSON object / dict keeps the last duplicate key).
class LogitBiasProcessor : public LogitsProcessor {
 public:
  explicit LogitBiasProcessor(const LogitBias& bias) {
    std::map<int, float> unique;
    for (auto& [id, b] : bias) {
      if (id < 0) fail("config", "logit_bias token id " + std::to_string(id) + " is negative");
      unique[id] = static_cast<float>(b);
    }
    for (auto& [id, b] : unique) {
      ids_.push_back(id);
      values_.push_back(b);
    }
  }
  void check_vocabulary(int v) const override {
    if (!ids_.empty() && ids_.back() >= v)
      fail("generate", "logit_bias token id " + std::to_string(ids_.back()) + " is outside the vocabulary (size " +
                           std::to_string(v) + ")");
  }
  mx::array apply(const mx::array& logits, const mx::array&) override {
    const int v = logits.shape(-1);
    check_vocabulary(v);
    if (!dense_ || dense_->shape(-1) != v) {
      auto idx = mx::array(ids_.data(), {static_cast<int>(ids_.size())}, mx::int32);
      auto val = mx::array(values_.data(), {static_cast<int>(values_.size())}, mx::float32);
      dense_ = mx::reshape(mx::put_along_axis(mx::zeros({v}, mx::float32), idx, val, 0), {1, v});
    }
    return mx::add(logits, mx::astype(*dense_, logits.dtype()));
  }
  std::optional<RowKernel> row_kernel(int vocab, int) override {
    check_vocabulary(vocab);
    return [ids = ids_, values = values_](std::span<float> x, std::span<const int32_t>) {
      for (size_t i = 0; i < ids.size(); ++i) x[ids[i]] += values[i];
    };
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<LogitBiasProcessor>(*this); }

 private:
  std::vector<int> ids_;  // sorted, unique
  std::vector<float> values_;
  std::optional<mx::array> dense_;  // [1, V] built once
};

}  // namespace

std::unique_ptr<LogitsProcessor> make_presence_frequency_penalty(double presence, double frequency) {
  return std::make_unique<PresenceFrequencyPenalty>(presence, frequency);
}
std::unique_ptr<LogitsProcessor> make_logit_bias(const LogitBias& bias) {
  return std::make_unique<LogitBiasProcessor>(bias);
}

}  // namespace mlxgp
