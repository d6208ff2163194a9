// Logits processors: small clone-able objects that transform next-token logits [B, V] on the
// device (no host loops over the vocabulary), composed into a pipeline in transformers' order
// (GenerationMixin._get_logits_processor: processors first, then the sampling warpers
// temperature -> top_k -> top_p when do_sample).
#pragma once

#include <memory>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/generation_config.h"

namespace mlxgp {

namespace mx = mlx::core;

class LogitsProcessor {
 public:
  virtual ~LogitsProcessor() = default;
  // Called once with the prompt ids [B, T] before the first apply(); stateful processors start here.
  virtual void on_prompt(const mx::array& ids) {}
  // logits [B, V] float32, ids [B, T] all tokens so far (prompt + generated) -> new logits [B, V].
  // `ids` is only materialised when needs_ids() is true; otherwise it may be an empty placeholder.
  virtual mx::array apply(const mx::array& logits, const mx::array& ids) = 0;
  // Called with the chosen tokens [B] after each step.
  virtual void on_token(const mx::array& tokens) {}
  virtual bool needs_ids() const { return false; }
  virtual std::unique_ptr<LogitsProcessor> clone() const = 0;
};

// transformers TemperatureLogitsWarper: logits / temperature.
std::unique_ptr<LogitsProcessor> make_temperature_warper(double temperature);
// transformers TopKLogitsWarper: tokens below the k-th largest logit -> -inf (ties with it kept).
std::unique_ptr<LogitsProcessor> make_top_k_warper(int top_k, int min_tokens_to_keep = 1);
// transformers TopPLogitsWarper: tokens outside the nucleus -> -inf.
std::unique_ptr<LogitsProcessor> make_top_p_warper(double top_p, int min_tokens_to_keep = 1);

class LogitsProcessorList {
 public:
  LogitsProcessorList() = default;
  LogitsProcessorList(const LogitsProcessorList& other);
  LogitsProcessorList& operator=(const LogitsProcessorList& other);
  LogitsProcessorList(LogitsProcessorList&&) = default;
  LogitsProcessorList& operator=(LogitsProcessorList&&) = default;

  void add(std::unique_ptr<LogitsProcessor> p) { items_.push_back(std::move(p)); }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  bool needs_ids() const;
  void on_prompt(const mx::array& ids);
  mx::array apply(const mx::array& logits, const mx::array& ids);
  void on_token(const mx::array& tokens);

 private:
  std::vector<std::unique_ptr<LogitsProcessor>> items_;
};

// The pipeline for a validated config, in transformers' order. Warpers are only added when
// do_sample is true, and only when they change something (temperature != 1, top_k != 0, top_p < 1),
// as transformers does.
LogitsProcessorList build_logits_processors(const GenerationConfig& config);

}  // namespace mlxgp
