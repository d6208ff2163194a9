// A fake Model for the generation-loop tests: next token is (last token + 1) % V (logit 10, others
// 0), or all-zero logits when `uniform`, or the same fixed logits every step. Batched like a real model.
#pragma once

#include <memory>
#include <vector>

#include <mlx/mlx.h>

#include "mlxgp/kv_cache.h"
#include "mlxgp/model.h"

namespace mx = mlx::core;

namespace mlxgp::testing {

// Counts positions; the fake model only needs offset().
class CountingCache : public KVCache {
 public:
  int offset() const override { return offset_; }
  std::pair<mx::array, mx::array> update(const mx::array& k, const mx::array& v) override {
    offset_ += k.shape(2);
    return {k, v};
  }
  int trim(int n) override {
    offset_ -= n;
    return n;
  }
  bool is_trimmable() const override { return true; }
  std::unique_ptr<KVCache> clone() const override { return std::make_unique<CountingCache>(*this); }
  void select(const mx::array&) override {}  // stores nothing per row

 private:
  int offset_ = 0;
};

// Next token is (token + 1) % vocab (logit 10, others 0), or all-zero logits when `uniform`.
class FakeModel : public Model {
 public:
  FakeModel(int vocab, int context, bool uniform = false) : uniform_(uniform) { init(vocab, context); }
  // Every step returns these logits.
  FakeModel(std::vector<float> fixed, int context) : fixed_(std::move(fixed)) {
    init(static_cast<int>(fixed_.size()), context);
  }
  void init(int vocab, int context) {
    config_.model_type = "fake";
    config_.vocab_size = vocab;
    config_.max_position_embeddings = context;
    config_.eos_token_id = {};
  }
  const ModelConfig& config() const override { return config_; }
  mx::array embed(const mx::array& tokens) const override {
    return mx::expand_dims(mx::astype(tokens, mx::float32), -1);
  }
  mx::array forward_embeddings(const mx::array& e, KVCacheList& caches) override {
    int b = e.shape(0), t = e.shape(1), v = config_.vocab_size;
    caches[0]->update(mx::zeros({b, 1, t, 1}), mx::zeros({b, 1, t, 1}));
    forwarded_ += t;
    if (uniform_) return mx::zeros({b, t, v});
    if (!fixed_.empty()) return mx::broadcast_to(mx::array(fixed_.data(), {1, 1, v}), {b, t, v});
    auto next = mx::remainder(mx::add(e, mx::array(1.0f)), mx::array(static_cast<float>(v)));  // [B, T, 1]
    auto hit = mx::equal(mx::astype(mx::arange(0, v), mx::float32), next);
    return mx::multiply(mx::astype(hit, mx::float32), mx::array(10.0f));
  }
  mx::array lm_head(const mx::array& h) const override { return h; }
  KVCacheList make_caches() const override {
    KVCacheList l;
    l.push_back(std::make_unique<CountingCache>());
    return l;
  }
  WeightMap& parameters() override { return weights_; }
  void set_parameters(const WeightMap&, bool) override {}
  int forwarded_ = 0;

 private:
  ModelConfig config_;
  WeightMap weights_;
  bool uniform_ = false;
  std::vector<float> fixed_;
};

}  // namespace mlxgp::testing
