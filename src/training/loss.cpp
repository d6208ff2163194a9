// xent_loss and loss_forward (torch / transformers semantics; see include/mlxgp/loss.h).
#include "mlxgp/loss.h"

#include <limits>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/recurrent_cache.h"
#include "models/router_capture.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

// Positions are fed once, with no KV cache kept: update() returns the new keys/values as they are.
class PassThroughCache : public KVCache {
 public:
  int offset() const override { return 0; }
  std::pair<mx::array, mx::array> update(const mx::array& k, const mx::array& v) override { return {k, v}; }
  int trim(int) override { return 0; }
  bool is_trimmable() const override { return false; }
  std::unique_ptr<KVCache> clone() const override { return std::make_unique<PassThroughCache>(); }
};

}  // namespace

LossResult xent_loss(const mx::array& logits, const mx::array& targets, double label_smoothing, int ignore_index) {
  if (logits.ndim() < 1 || logits.ndim() != targets.ndim() + 1)
    fail("loss", "logits must be [..., vocab] and targets [...] with the same leading shape");
  for (int i = 0; i < static_cast<int>(targets.ndim()); ++i)
    if (logits.shape(i) != targets.shape(i)) fail("loss", "logits and targets have different leading shapes");
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0)) fail("loss", "label_smoothing must be in [0, 1]");
  if (!mx::issubdtype(targets.dtype(), mx::integer)) fail("loss", "targets must be integer token ids");
  const int V = logits.shape(-1);
  if (V < 1) fail("loss", "logits need at least one vocabulary entry");
  // No positions at all: torch's mean over nothing is nan (as when every target is ignored).
  if (targets.size() == 0) return {mx::array(std::numeric_limits<float>::quiet_NaN()), mx::array(0)};
  // torch refuses a target outside [0, V) that is not ignore_index; taking it would read another row's
  // logit (or past the end). Checked in int64, before the int32 cast could wrap it into range.
  if (!targets.is_tracer() && targets.size() > 0) {
    auto t64 = mx::reshape(mx::astype(targets, mx::int64), {-1});
    auto bad = mx::logical_and(mx::not_equal(t64, mx::array(static_cast<int64_t>(ignore_index))),
                               mx::logical_or(mx::less(t64, mx::array(int64_t{0})),
                                              mx::greater_equal(t64, mx::array(static_cast<int64_t>(V)))));
    if (mx::any(bad).item<bool>()) {
      auto first = mx::take(t64, mx::argmax(mx::astype(bad, mx::int32)));
      fail("loss", "target " + std::to_string(first.item<int64_t>()) + " is out of bounds: targets must be in [0, " +
                       std::to_string(V) + ") or ignore_index (" + std::to_string(ignore_index) + ")");
    }
  }
  auto x = mx::reshape(mx::astype(logits, mx::float32), {-1, V});
  auto t = mx::reshape(mx::astype(targets, mx::int32), {-1});
  auto counted = mx::not_equal(t, mx::array(ignore_index));
  auto safe_t = mx::where(counted, t, mx::array(0));
  auto logz = mx::logsumexp(x, -1);
  auto picked = mx::squeeze(mx::take_along_axis(x, mx::expand_dims(safe_t, -1), -1), -1);
  auto per = mx::subtract(logz, picked);  // -log p_target
  if (label_smoothing > 0.0) {
    auto smooth = mx::subtract(logz, mx::mean(x, -1));  // mean_v(-log p_v)
    auto e = static_cast<float>(label_smoothing);
    per = mx::add(mx::multiply(per, mx::array(1.0f - e)), mx::multiply(smooth, mx::array(e)));
  }
  auto mask = mx::astype(counted, mx::float32);
  auto n = mx::sum(mask);
  auto loss = mx::divide(mx::sum(mx::multiply(per, mask)), n);
  return {loss, mx::astype(n, mx::int32)};
}

namespace {

// transformers' forward takes any attention_mask; mlxgp's training forward masks nothing but the causal
// order, which equals transformers' result exactly when every row is right-padded (a real token never
// attends to a later pad). Any other mask is refused rather than ignored.
void check_attention_mask(const mx::array& mask, const mx::array& ids) {
  if (mask.shape() != ids.shape()) fail("loss", "attention_mask must have the shape of input_ids");
  auto m = mx::astype(mask, mx::float32);
  if (!mx::all(mx::logical_or(mx::equal(m, mx::array(0.0f)), mx::equal(m, mx::array(1.0f)))).item<bool>())
    fail("loss", "attention_mask must hold only 0 and 1");
  const int T = ids.shape(1);
  auto later = mx::slice(m, {0, 1}, {m.shape(0), T}), earlier = mx::slice(m, {0, 0}, {m.shape(0), T - 1});
  if (mx::any(mx::greater(later, earlier)).item<bool>())
    fail("loss",
         "attention_mask must mark right padding (each row's 1s, then its 0s): mlxgp trains on right-padded "
         "batches (tokenizer padding_side=\"right\")");
}

}  // namespace

mx::array next_token_targets(const Batch& batch, std::optional<int> pad_id, int vocab_size) {
  const auto& ids = batch.input_ids;
  if (ids.ndim() != 2 || ids.shape(1) < 2) fail("loss", "input_ids must be [batch, length >= 2]");
  const int B = ids.shape(0), T = ids.shape(1);
  // Floats or bools would be truncated into some token: refused, as torch's embedding refuses them.
  if (!mx::issubdtype(ids.dtype(), mx::integer)) fail("loss", "input_ids must be integers");
  if (batch.labels && !mx::issubdtype(batch.labels->dtype(), mx::integer))
    fail("loss", "labels must be integer token ids");
  auto labels = batch.labels ? *batch.labels : ids;
  if (labels.shape() != ids.shape()) fail("loss", "labels must have the shape of input_ids");
  // Ids past the embedding would read outside it (a crash, or a loss of garbage); generate() refuses them
  // too. Checked in int64, before the int32 cast could wrap an id into range.
  if (!ids.is_tracer() && !labels.is_tracer()) {
    const int64_t hi_ok = vocab_size > 0 ? vocab_size : int64_t{1} << 31;
    auto ids64 = mx::astype(ids, mx::int64), labels64 = mx::astype(labels, mx::int64);
    auto lo = mx::min(ids64), hi = mx::max(ids64);
    auto valid = mx::logical_or(
        mx::equal(labels64, mx::array(int64_t{-100})),
        mx::logical_and(mx::greater_equal(labels64, mx::array(int64_t{0})), mx::less(labels64, mx::array(hi_ok))));
    auto labels_ok = mx::all(valid);
    mx::eval(lo, hi, labels_ok);
    const std::string vocab =
        vocab_size > 0 ? "the vocabulary (size " + std::to_string(vocab_size) + ")" : "the int32 range";
    if (lo.item<int64_t>() < 0 || hi.item<int64_t>() >= hi_ok)
      fail("loss", "input_ids hold token id " +
                       std::to_string(lo.item<int64_t>() < 0 ? lo.item<int64_t>() : hi.item<int64_t>()) + ", outside " +
                       vocab);
    if (!labels_ok.item<bool>()) fail("loss", "labels must be -100 (ignored) or token ids inside " + vocab);
  }
  labels = mx::astype(labels, mx::int32);
  if (batch.loss_mask) {
    if (batch.loss_mask->shape() != ids.shape()) fail("loss", "loss_mask must have the shape of input_ids");
    labels = mx::where(mx::astype(*batch.loss_mask, mx::bool_), labels, mx::array(-100));
  }
  if (pad_id) labels = mx::where(mx::equal(labels, mx::array(*pad_id)), mx::array(-100), labels);
  return mx::slice(labels, {0, 1}, {B, T});
}

LossResult loss_forward(Model& model, const Batch& batch, double label_smoothing, std::optional<int> pad_id) {
  const auto& c = model.config();
  auto targets = next_token_targets(batch, pad_id, c.vocab_size);
  const auto ids = mx::astype(batch.input_ids, mx::int32);
  const int B = ids.shape(0), T = ids.shape(1);
  if (batch.attention_mask) check_attention_mask(*batch.attention_mask, ids);
  std::optional<layers::RouterLogitsCapture> capture;
  if (c.output_router_logits && c.num_experts > 0) capture.emplace();
  KVCacheList caches;
  // Recurrent layers (lfm2's convolutions) get their own cache, which starts from zeros; its state is dropped.
  for (auto& made : model.make_caches())
    caches.push_back(dynamic_cast<RecurrentCache*>(made.get()) ? std::move(made)
                                                               : std::make_unique<PassThroughCache>());
  auto logits = model.forward(ids, caches);
  // A soft prompt prepends virtual positions: only the last T rows belong to the tokens.
  const int rows = logits.shape(1);
  auto pred = mx::slice(logits, {0, rows - T, 0}, {B, rows - 1, logits.shape(2)});
  auto result = xent_loss(pred, targets, label_smoothing, -100);
  if (!capture) return result;
  std::optional<mx::array> mask;
  if (batch.attention_mask) {
    mask = mx::astype(*batch.attention_mask, mx::float32);
  } else if (pad_id) {
    mask = mx::astype(mx::not_equal(ids, mx::array(*pad_id)), mx::float32);
  }
  // Virtual (soft prompt) positions are routed too and count as real tokens, as PEFT extends the mask.
  if (mask && rows > T) mask = mx::concatenate({mx::ones({B, rows - T}, mx::float32), *mask}, 1);
  auto aux = load_balancing_loss(capture->logits(), c.num_experts, c.num_experts_per_tok, mask);
  result.loss = mx::add(result.loss, mx::multiply(aux, mx::array(static_cast<float>(c.router_aux_loss_coef))));
  result.aux_loss = aux;
  return result;
}

}  // namespace mlxgp
