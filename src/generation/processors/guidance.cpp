// Classifier-free guidance: transformers UnbatchedClassifierFreeGuidanceLogitsProcessor. A second,
// unconditional forward runs on the same model with its own KV cache: first over the negative
// prompt (or, without one, the last prompt token), then one generated token per step. Both
// distributions are log-softmaxed and mixed as scale * (cond - uncond) + uncond.
#include <string>

#include <mlx/mlx.h>

#include "mlxgp/cache_options.h"
#include "mlxgp/error.h"
#include "mlxgp/logits_processor.h"
#include "mlxgp/model.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

mx::array log_softmax(const mx::array& x) { return mx::subtract(x, mx::logsumexp(x, -1, true)); }

class ClassifierFreeGuidance : public LogitsProcessor {
 public:
  ClassifierFreeGuidance(double scale, Model& model, std::optional<std::vector<int>> negative,
                         std::optional<std::string> kv_cache_dtype)
      : scale_(scale), model_(&model), negative_(std::move(negative)) {
    cache_.kv_cache_dtype = std::move(kv_cache_dtype);
    validate(cache_);
    if (negative_) {
      if (negative_->empty()) fail("config", "the negative prompt is empty");
      const int vocab = model.config().vocab_size;
      for (int id : *negative_)
        if (id < 0 || id >= vocab)
          fail("generate", "negative prompt token id " + std::to_string(id) + " is outside the vocabulary (size " +
                               std::to_string(vocab) + ")");
    }
  }
  ClassifierFreeGuidance(const ClassifierFreeGuidance& o)
      : scale_(o.scale_),
        model_(o.model_),
        negative_(o.negative_),
        cache_(o.cache_),
        first_(o.first_),
        rows_(o.rows_),
        prompt_last_(o.prompt_last_),
        pending_(o.pending_) {
    for (auto& c : o.caches_) caches_.push_back(c->clone());
  }

  void on_prompt(const mx::array& ids) override {
    rows_ = ids.shape(0);
    const int t = ids.shape(1);
    prompt_last_ = mx::astype(mx::slice(ids, {0, t - 1}, {rows_, t}), mx::int32);  // HF input_ids[:, -1:]
    caches_ = make_caches(*model_, cache_);
    pending_.clear();
    first_ = true;
  }

  mx::array apply(const mx::array& logits, const mx::array&) override {
    if (!prompt_last_) fail("generate", "classifier-free guidance: on_prompt() was not called");
    const int b = logits.shape(0);
    if (b != rows_) fail("generate", "classifier-free guidance: batch size changed during generation");
    std::vector<mx::array> parts;
    if (first_) {
      // HF's first pass: the whole unconditional prompt (the negative prompt, shared by every row).
      if (negative_) {
        auto neg = mx::array(negative_->data(), {1, static_cast<int>(negative_->size())}, mx::int32);
        parts.push_back(mx::broadcast_to(neg, {b, neg.shape(1)}));
      } else {
        parts.push_back(*prompt_last_);
      }
      first_ = false;
    }
    // Then every token chosen since the last call (one per step in generation).
    for (auto& t : pending_) parts.push_back(mx::reshape(mx::astype(t, mx::int32), {b, 1}));
    pending_.clear();
    if (parts.empty()) fail("generate", "classifier-free guidance: apply() called twice without a new token");
    auto input = parts.size() == 1 ? parts[0] : mx::concatenate(parts, 1);
    auto uncond = model_->forward_last(input, caches_, 1);  // [B, 1, V]
    uncond = mx::reshape(uncond, {b, uncond.shape(-1)});
    if (uncond.shape(-1) != logits.shape(-1))
      fail("generate", "classifier-free guidance: the model's vocabulary does not match the scores");
    auto cond = log_softmax(logits);
    auto un = log_softmax(mx::astype(uncond, logits.dtype()));
    auto s = mx::array(static_cast<float>(scale_), logits.dtype());
    return mx::add(mx::multiply(s, mx::subtract(cond, un)), un);
  }

  void on_token(const mx::array& tokens) override { pending_.push_back(tokens); }

  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<ClassifierFreeGuidance>(*this); }

 private:
  double scale_;
  Model* model_;
  std::optional<std::vector<int>> negative_;
  CacheOptions cache_;  // only kv_cache_dtype: the unconditional pass stores keys as the conditional one does
  bool first_ = true;
  int rows_ = 0;
  std::optional<mx::array> prompt_last_;  // [B, 1]
  std::vector<mx::array> pending_;        // tokens [B] not yet run through the unconditional branch
  KVCacheList caches_;
};

}  // namespace

std::unique_ptr<LogitsProcessor> make_classifier_free_guidance(double scale, Model& model,
                                                               std::optional<std::vector<int>> negative_prompt_ids,
                                                               std::optional<std::string> kv_cache_dtype) {
  return std::make_unique<ClassifierFreeGuidance>(scale, model, std::move(negative_prompt_ids),
                                                  std::move(kv_cache_dtype));
}

}  // namespace mlxgp
