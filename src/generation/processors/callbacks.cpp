// User-supplied processors: a logits callback (the C++ form of a custom transformers LogitsProcessor)
// and transformers PrefixConstrainedLogitsProcessor (prefix_allowed_tokens_fn). The prefix function
// is the user's host code, so it reads each row's ids on the host; the mask itself is built on the
// device from the allowed ids (no loop over the vocabulary).
#include <string>

#include "generation/processors/common.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

using processors::ids_mask;
using processors::neg_inf;

class CallbackProcessor : public LogitsProcessor {
 public:
  explicit CallbackProcessor(LogitsCallback fn) : fn_(std::move(fn)) {
    if (!fn_) fail("config", "the logits callback is empty");
  }
  mx::array apply(const mx::array& logits, const mx::array& ids) override {
    auto out = fn_(logits, ids);
    if (out.shape() != logits.shape())
      fail("generate", "the logits callback returned an array of another shape than the scores");
    return mx::astype(out, logits.dtype());
  }
  bool needs_ids() const override { return true; }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<CallbackProcessor>(*this); }

 private:
  LogitsCallback fn_;
};

class PrefixAllowedTokens : public LogitsProcessor {
 public:
  PrefixAllowedTokens(PrefixAllowedTokensFn fn, int rows_per_batch) : fn_(std::move(fn)), group_(rows_per_batch) {
    if (!fn_) fail("config", "prefix_allowed_tokens_fn is empty");
    if (group_ < 1) fail("config", "prefix_allowed_tokens_fn: rows per batch entry must be >= 1");
  }
  mx::array apply(const mx::array& logits, const mx::array& ids_in) override {
    const int b = logits.shape(0), v = logits.shape(-1);
    if (b % group_ != 0)
      fail("generate", "prefix_allowed_tokens_fn: the batch is not a multiple of the rows per entry");
    if (ids_in.ndim() != 2 || ids_in.shape(0) != b)
      fail("generate", "prefix_allowed_tokens_fn: the ids and the scores have different batch sizes");
    auto ids = mx::contiguous(mx::astype(ids_in, mx::int32));  // row-major on the host
    mx::eval(ids);
    const int t = ids.shape(1);
    const int* data = ids.data<int>();
    std::vector<std::vector<int>> allowed(b);
    size_t width = 1;
    for (int r = 0; r < b; ++r) {
      // HF: batch_id = row // num_beams (num_return_sequences rows share one batch entry).
      allowed[r] =
          fn_(r / group_, std::vector<int>(data + static_cast<size_t>(r) * t, data + static_cast<size_t>(r + 1) * t));
      if (allowed[r].empty())
        fail("generate", "prefix_allowed_tokens_fn returned an empty list for batch ID " + std::to_string(r / group_) +
                             ": the constraint is unsatisfiable");
      for (int id : allowed[r])
        if (id < 0 || id >= v)
          fail("generate", "prefix_allowed_tokens_fn returned token id " + std::to_string(id) +
                               ", outside the vocabulary (size " + std::to_string(v) + ")");
      width = std::max(width, allowed[r].size());
    }
    std::vector<int> flat(b * width, v);  // v: padding column, dropped by ids_mask
    for (int r = 0; r < b; ++r) std::copy(allowed[r].begin(), allowed[r].end(), flat.begin() + r * width);
    auto mask = ids_mask(mx::array(flat.data(), {b, static_cast<int>(width)}, mx::int32), v);
    auto additive = mx::where(mask, mx::array(0.0f, logits.dtype()), neg_inf());
    auto out = mx::add(logits, additive);
    // HF: when every allowed token of every row of a batch entry is already -inf, the entry gets the
    // bare mask (0 on the allowed tokens) so the constraint still holds.
    auto row_dead = mx::all(mx::equal(out, neg_inf()), -1);  // amax(...).isneginf()
    auto entry_dead = mx::all(mx::reshape(row_dead, {b / group_, group_}), -1, true);
    auto dead = mx::reshape(mx::broadcast_to(entry_dead, {b / group_, group_}), {b, 1});
    return mx::where(dead, additive, out);
  }
  bool needs_ids() const override { return true; }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<PrefixAllowedTokens>(*this); }

 private:
  PrefixAllowedTokensFn fn_;
  int group_;
};

}  // namespace

std::unique_ptr<LogitsProcessor> make_callback_processor(LogitsCallback fn) {
  return std::make_unique<CallbackProcessor>(std::move(fn));
}
std::unique_ptr<LogitsProcessor> make_prefix_allowed_tokens(PrefixAllowedTokensFn fn, int rows_per_batch) {
  return std::make_unique<PrefixAllowedTokens>(std::move(fn), rows_per_batch);
}

}  // namespace mlxgp
