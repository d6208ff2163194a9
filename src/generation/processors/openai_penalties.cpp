// OpenAI / vLLM sampling penalties (no transformers class exists): presence_penalty and
// frequency_penalty over the GENERATED tokens only (vLLM's output_token_ids; the prompt does not
// count), and a per-token logit_bias map. Counts live on the device as [B, V] and grow in on_token().
#include <map>
#include <string>

#include "generation/processors/common.h"
#include "mlxgp/error.h"

namespace mlxgp {

namespace {

// logits -= frequency * count + presence * (count > 0)   (vLLM apply_penalties / OpenAI docs).
class PresenceFrequencyPenalty : public LogitsProcessor {
 public:
  PresenceFrequencyPenalty(double presence, double frequency) : presence_(presence), frequency_(frequency) {}

  void on_prompt(const mx::array& ids) override {
    rows_ = ids.shape(0);
    counts_.reset();
    pending_.clear();
  }
  mx::array apply(const mx::array& logits, const mx::array&) override {
    const int b = logits.shape(0), v = logits.shape(-1);
    // The vocabulary is first known here; tokens seen before (on_token) are folded in now.
    if (!counts_) counts_ = mx::zeros({b, v}, mx::float32);
    if (counts_->shape(0) != b) fail("generate", "presence/frequency penalty: batch size changed during generation");
    for (auto& t : pending_) {
      // Sampled ids always lie in [0, V); user-fed ids (process-logits) are clamped into range by
      // dropping the out-of-range ones' weight, as ids_mask does.
      auto ids = mx::reshape(mx::astype(t, mx::int32), {b, 1});
      auto inside = mx::logical_and(mx::greater_equal(ids, mx::array(0)), mx::less(ids, mx::array(v)));
      auto idx = mx::where(inside, ids, mx::array(0));
      counts_ = mx::scatter_add_axis(*counts_, idx, mx::astype(inside, mx::float32), 1);
    }
    pending_.clear();
    // One penalty array per step: frequency * count + presence * [count > 0].
    auto c = *counts_;
    auto penalty = mx::where(mx::greater(c, mx::array(0.0f)),
                             mx::add(mx::multiply(c, mx::array(static_cast<float>(frequency_))),
                                     mx::array(static_cast<float>(presence_))),
                             mx::array(0.0f));
    return mx::subtract(logits, penalty);
  }
  void on_token(const mx::array& tokens) override {
    if (rows_ && tokens.size() != static_cast<size_t>(rows_))
      fail("generate", "presence/frequency penalty: expected one token per row");
    pending_.push_back(tokens);
  }
  std::unique_ptr<LogitsProcessor> clone() const override {
    return std::make_unique<PresenceFrequencyPenalty>(*this);
  }

 private:
  double presence_, frequency_;
  int rows_ = 0;
  std::optional<mx::array> counts_;  // [B, V] float32 occurrences of each token among the generated ones
  std::vector<mx::array> pending_;   // tokens [B] not folded into counts_ yet
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
  mx::array apply(const mx::array& logits, const mx::array&) override {
    const int v = logits.shape(-1);
    if (!ids_.empty() && ids_.back() >= v)
      fail("generate", "logit_bias token id " + std::to_string(ids_.back()) + " is outside the vocabulary (size " +
                           std::to_string(v) + ")");
    if (!dense_ || dense_->shape(-1) != v) {
      auto idx = mx::array(ids_.data(), {static_cast<int>(ids_.size())}, mx::int32);
      auto val = mx::array(values_.data(), {static_cast<int>(values_.size())}, mx::float32);
      dense_ = mx::reshape(mx::put_along_axis(mx::zeros({v}, mx::float32), idx, val, 0), {1, v});
    }
    return mx::add(logits, mx::astype(*dense_, logits.dtype()));
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
