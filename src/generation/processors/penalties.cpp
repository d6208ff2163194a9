// transformers RepetitionPenaltyLogitsProcessor and NoRepeatNGramLogitsProcessor, batched on [B, V].
#include <string>

#include "generation/processors/common.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

using processors::ids_mask;
using processors::neg_inf;

class RepetitionPenalty : public LogitsProcessor {
 public:
  explicit RepetitionPenalty(double penalty) : penalty_(penalty) {
    if (!(penalty > 0)) fail("config", "repetition_penalty must be > 0");
  }
  mx::array apply(const mx::array& logits, const mx::array& ids) override {
    // Every token present in the sequence (prompt included; no padding here, so HF's
    // prompt_ignore_length is 0) is penalised once, however often it occurs.
    auto mask = ids_mask(ids, logits.shape(-1));
    auto p = mx::array(static_cast<float>(penalty_), logits.dtype());
    auto penalised =
        mx::where(mx::less(logits, mx::array(0.0f, logits.dtype())), mx::multiply(logits, p), mx::divide(logits, p));
    return mx::where(mask, penalised, logits);
  }
  std::optional<RowKernel> row_kernel(int, int) override {
    return [p = static_cast<float>(penalty_)](std::span<float> x, std::span<const int32_t> ids) {
      thread_local std::vector<uint8_t> seen;
      if (seen.size() < x.size()) seen.assign(x.size(), 0);
      const int v = static_cast<int>(x.size());
      for (int32_t id : ids) {
        if (id < 0 || id >= v || seen[id]) continue;  // once per token, however often it occurs
        seen[id] = 1;
        x[id] = x[id] < 0.0f ? x[id] * p : x[id] / p;
      }
      for (int32_t id : ids)
        if (id >= 0 && id < v) seen[id] = 0;
    };
  }
  bool needs_ids() const override { return true; }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<RepetitionPenalty>(*this); }

 private:
  double penalty_;
};

class NoRepeatNGram : public LogitsProcessor {
 public:
  explicit NoRepeatNGram(int n) : n_(n) {
    if (n <= 0) fail("config", "no_repeat_ngram_size must be > 0");
  }
  mx::array apply(const mx::array& logits, const mx::array& ids_in) override {
    const int b = ids_in.shape(0), t = ids_in.shape(1), v = logits.shape(-1);
    if (t < n_) return logits;  // HF: no complete n-gram yet
    auto ids = mx::astype(ids_in, mx::int32);
    // Window i = ids[:, i : i+n]. It bans its last token when its first n-1 tokens equal the
    // sequence's last n-1 tokens (HF compares every window, the last one included).
    const int windows = t - n_ + 1;
    auto matches = mx::ones({b, windows}, mx::bool_);
    for (int j = 0; j < n_ - 1; ++j) {
      auto col = mx::slice(ids, {0, j}, {b, j + windows});
      auto want = mx::slice(ids, {0, t - n_ + 1 + j}, {b, t - n_ + 2 + j});
      matches = mx::logical_and(matches, mx::equal(col, want));
    }
    auto next = mx::slice(ids, {0, n_ - 1}, {b, t});
    auto banned = mx::where(matches, next, mx::array(v, mx::int32));  // v = "nothing" column
    return mx::where(ids_mask(banned, v), neg_inf(), logits);
  }
  std::optional<RowKernel> row_kernel(int, int num_ids) override {
    if (num_ids < n_) return RowKernel{};  // HF: no complete n-gram yet
    return [n = n_](std::span<float> x, std::span<const int32_t> ids) {
      const int t = static_cast<int>(ids.size()), v = static_cast<int>(x.size());
      for (int i = 0; i + n <= t; ++i) {
        bool match = true;
        for (int j = 0; j < n - 1 && match; ++j) match = ids[i + j] == ids[t - n + 1 + j];
        const int32_t banned = ids[i + n - 1];
        if (match && banned >= 0 && banned < v) x[banned] = -INFINITY;
      }
    };
  }
  bool needs_ids() const override { return true; }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<NoRepeatNGram>(*this); }

 private:
  int n_;
};

}  // namespace

std::unique_ptr<LogitsProcessor> make_repetition_penalty(double penalty) {
  return std::make_unique<RepetitionPenalty>(penalty);
}
std::unique_ptr<LogitsProcessor> make_no_repeat_ngram(int ngram_size) {
  return std::make_unique<NoRepeatNGram>(ngram_size);
}

}  // namespace mlxgp
