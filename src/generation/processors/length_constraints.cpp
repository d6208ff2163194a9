// Processors that depend on the sequence length or on fixed token lists: transformers
// MinLengthLogitsProcessor, MinNewTokensLengthLogitsProcessor, SuppressTokensLogitsProcessor,
// SuppressTokensAtBeginLogitsProcessor, ForcedBOSTokenLogitsProcessor, ForcedEOSTokenLogitsProcessor.
// The length is ids.shape(1) (all tokens so far), the prompt length comes from on_prompt().
#include <algorithm>
#include <cmath>
#include <string>

#include "generation/processors/common.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

using processors::neg_inf;
using processors::vocab_mask;

mx::array ban(const mx::array& logits, const std::vector<int>& tokens) {
  return mx::where(vocab_mask(logits.shape(-1), tokens), neg_inf(), logits);
}

// Row forms: ids outside [0, V) are ignored, as vocab_mask ignores them.
RowKernel ban_row(std::vector<int> tokens) {
  return [tokens = std::move(tokens)](std::span<float> x, std::span<const int32_t>) {
    for (int t : tokens)
      if (t >= 0 && t < static_cast<int>(x.size())) x[t] = -INFINITY;
  };
}
void check_forced(const std::vector<int>& tokens, int vocab, const char* field) {
  for (int t : tokens)
    if (t < 0 || t >= vocab)
      fail("generate", std::string(field) + " " + std::to_string(t) + " is outside the vocabulary (size " +
                           std::to_string(vocab) + ")");
}
RowKernel force_row(std::vector<int> tokens) {
  return [tokens = std::move(tokens)](std::span<float> x, std::span<const int32_t>) {
    std::fill(x.begin(), x.end(), -INFINITY);
    for (int t : tokens) x[t] = 0.0f;
  };
}

// All -inf except `tokens`, which get 0 (HF full_like(-inf) then scores[:, ids] = 0).
mx::array force(const mx::array& logits, const std::vector<int>& tokens, const char* field) {
  for (int t : tokens)
    if (t < 0 || t >= logits.shape(-1))
      fail("generate", std::string(field) + " " + std::to_string(t) + " is outside the vocabulary (size " +
                           std::to_string(logits.shape(-1)) + ")");
  return mx::where(vocab_mask(logits.shape(-1), tokens), mx::array(0.0f, logits.dtype()),
                   mx::full(logits.shape(), neg_inf(), logits.dtype()));
}

class LengthProcessor : public LogitsProcessor {
 public:
  void on_prompt(const mx::array& ids) override { prompt_len_ = ids.shape(1); }
  bool needs_ids() const override { return true; }

 protected:
  int prompt_len_ = 0;
};

// HF generate() turns min_new_tokens into min_length = prompt + min_new_tokens (it wins over a
// user min_length), so both processors ban EOS for the same steps.
class MinLength : public LengthProcessor {
 public:
  MinLength(int min_length, std::optional<int> min_new, std::vector<int> eos)
      : min_length_(min_length), min_new_(min_new), eos_(std::move(eos)) {}
  mx::array apply(const mx::array& logits, const mx::array& ids) override {
    int limit = min_new_ ? prompt_len_ + *min_new_ : min_length_;
    return ids.shape(1) < limit ? ban(logits, eos_) : logits;
  }
  std::optional<RowKernel> row_kernel(int, int num_ids) override {
    int limit = min_new_ ? prompt_len_ + *min_new_ : min_length_;
    return num_ids < limit ? ban_row(eos_) : RowKernel{};
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<MinLength>(*this); }

 private:
  int min_length_;
  std::optional<int> min_new_;
  std::vector<int> eos_;
};

class MinNewTokens : public LengthProcessor {
 public:
  MinNewTokens(int min_new, std::vector<int> eos) : min_new_(min_new), eos_(std::move(eos)) {}
  mx::array apply(const mx::array& logits, const mx::array& ids) override {
    return ids.shape(1) - prompt_len_ < min_new_ ? ban(logits, eos_) : logits;
  }
  std::optional<RowKernel> row_kernel(int, int num_ids) override {
    return num_ids - prompt_len_ < min_new_ ? ban_row(eos_) : RowKernel{};
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<MinNewTokens>(*this); }

 private:
  int min_new_;
  std::vector<int> eos_;
};

class SuppressTokens : public LogitsProcessor {
 public:
  explicit SuppressTokens(std::vector<int> tokens) : tokens_(std::move(tokens)) {}
  mx::array apply(const mx::array& logits, const mx::array&) override { return ban(logits, tokens_); }
  std::optional<RowKernel> row_kernel(int, int) override { return ban_row(tokens_); }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<SuppressTokens>(*this); }

 private:
  std::vector<int> tokens_;
};

// HF: begin_index is the prompt length, +1 when the prompt is a single token and a BOS is forced.
class SuppressAtBegin : public LengthProcessor {
 public:
  SuppressAtBegin(std::vector<int> tokens, bool forced_bos) : tokens_(std::move(tokens)), forced_bos_(forced_bos) {}
  mx::array apply(const mx::array& logits, const mx::array& ids) override {
    int begin = (prompt_len_ > 1 || !forced_bos_) ? prompt_len_ : prompt_len_ + 1;
    return ids.shape(1) == begin ? ban(logits, tokens_) : logits;
  }
  std::optional<RowKernel> row_kernel(int, int num_ids) override {
    int begin = (prompt_len_ > 1 || !forced_bos_) ? prompt_len_ : prompt_len_ + 1;
    return num_ids == begin ? ban_row(tokens_) : RowKernel{};
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<SuppressAtBegin>(*this); }

 private:
  std::vector<int> tokens_;
  bool forced_bos_;
};

class ForcedBos : public LogitsProcessor {
 public:
  explicit ForcedBos(int bos) : bos_(bos) {}
  mx::array apply(const mx::array& logits, const mx::array& ids) override {
    return ids.shape(1) == 1 ? force(logits, {bos_}, "forced_bos_token_id") : logits;
  }
  std::optional<RowKernel> row_kernel(int vocab, int num_ids) override {
    if (num_ids != 1) return RowKernel{};
    check_forced({bos_}, vocab, "forced_bos_token_id");
    return force_row({bos_});
  }
  bool needs_ids() const override { return true; }
  void check_vocabulary(int vocab) const override { check_forced({bos_}, vocab, "forced_bos_token_id"); }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<ForcedBos>(*this); }

 private:
  int bos_;
};

// HF's max_length here is the effective one: prompt + max_new_tokens when max_new_tokens is set.
class ForcedEos : public LengthProcessor {
 public:
  ForcedEos(int max_length, std::optional<int> max_new, std::vector<int> eos)
      : max_length_(max_length), max_new_(max_new), eos_(std::move(eos)) {}
  mx::array apply(const mx::array& logits, const mx::array& ids) override {
    int max_length = max_new_ ? prompt_len_ + *max_new_ : max_length_;
    return ids.shape(1) == max_length - 1 ? force(logits, eos_, "forced_eos_token_id") : logits;
  }
  std::optional<RowKernel> row_kernel(int vocab, int num_ids) override {
    int max_length = max_new_ ? prompt_len_ + *max_new_ : max_length_;
    if (num_ids != max_length - 1) return RowKernel{};
    check_forced(eos_, vocab, "forced_eos_token_id");
    return force_row(eos_);
  }
  void check_vocabulary(int vocab) const override { check_forced(eos_, vocab, "forced_eos_token_id"); }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<ForcedEos>(*this); }

 private:
  int max_length_;
  std::optional<int> max_new_;
  std::vector<int> eos_;
};

class ExponentialDecay : public LengthProcessor {
 public:
  ExponentialDecay(int start, double factor, std::vector<int> eos)
      : start_(start), factor_(factor), eos_(std::move(eos)) {}
  mx::array apply(const mx::array& logits, const mx::array& ids) override {
    const int regulation_start = prompt_len_ + start_;
    const int cur = ids.shape(1);
    if (cur <= regulation_start || eos_.empty()) return logits;
    for (int e : eos_)
      if (e < 0 || e >= logits.shape(-1))
        fail("generate", "eos_token_id " + std::to_string(e) + " is outside the vocabulary");
    // HF computes factor**n - 1 in Python (double); torch then multiplies in float32. Non-finite
    // EOS logits get no penalty.
    const float scale = static_cast<float>(std::pow(factor_, cur - regulation_start) - 1.0);
    auto penalty = mx::multiply(mx::abs(logits), mx::array(scale, logits.dtype()));
    penalty = mx::where(mx::isfinite(logits), penalty, mx::array(0.0f, logits.dtype()));
    return mx::where(processors::vocab_mask(logits.shape(-1), eos_), mx::add(logits, penalty), logits);
  }
  std::optional<RowKernel> row_kernel(int vocab, int num_ids) override {
    const int regulation_start = prompt_len_ + start_;
    if (num_ids <= regulation_start || eos_.empty()) return RowKernel{};
    for (int e : eos_)
      if (e < 0 || e >= vocab) fail("generate", "eos_token_id " + std::to_string(e) + " is outside the vocabulary");
    const float scale = static_cast<float>(std::pow(factor_, num_ids - regulation_start) - 1.0);
    // A token listed twice is raised once (the device path's mask).
    std::vector<int> eos = eos_;
    std::sort(eos.begin(), eos.end());
    eos.erase(std::unique(eos.begin(), eos.end()), eos.end());
    return [eos, scale](std::span<float> x, std::span<const int32_t>) {
      for (int e : eos)
        if (std::isfinite(x[e])) x[e] = x[e] + std::fabs(x[e]) * scale;
    };
  }
  void check_vocabulary(int vocab) const override {
    for (int e : eos_)
      if (e < 0 || e >= vocab) fail("generate", "eos_token_id " + std::to_string(e) + " is outside the vocabulary");
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<ExponentialDecay>(*this); }

 private:
  int start_;
  double factor_;
  std::vector<int> eos_;
};

}  // namespace

std::unique_ptr<LogitsProcessor> make_exponential_decay(int start_index, double factor, std::vector<int> eos) {
  return std::make_unique<ExponentialDecay>(start_index, factor, std::move(eos));
}
std::unique_ptr<LogitsProcessor> make_min_length(int min_length, std::optional<int> min_new_tokens,
                                                 std::vector<int> eos) {
  return std::make_unique<MinLength>(min_length, min_new_tokens, std::move(eos));
}
std::unique_ptr<LogitsProcessor> make_min_new_tokens(int min_new_tokens, std::vector<int> eos) {
  return std::make_unique<MinNewTokens>(min_new_tokens, std::move(eos));
}
std::unique_ptr<LogitsProcessor> make_suppress_tokens(std::vector<int> tokens) {
  return std::make_unique<SuppressTokens>(std::move(tokens));
}
std::unique_ptr<LogitsProcessor> make_begin_suppress_tokens(std::vector<int> tokens, bool forced_bos) {
  return std::make_unique<SuppressAtBegin>(std::move(tokens), forced_bos);
}
std::unique_ptr<LogitsProcessor> make_forced_bos(int bos_token_id) { return std::make_unique<ForcedBos>(bos_token_id); }
std::unique_ptr<LogitsProcessor> make_forced_eos(int max_length, std::optional<int> max_new_tokens,
                                                 std::vector<int> eos) {
  return std::make_unique<ForcedEos>(max_length, max_new_tokens, std::move(eos));
}

}  // namespace mlxgp
