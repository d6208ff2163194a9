// force_words_ids outside beam search (transformers only honours them in constrained beam search, so
// these semantics are the issue's own): every constraint (a list of alternative token sequences) must
// appear among the generated tokens.
//  - Once the first token of an alternative of an unmet constraint is produced, its continuation is
//    forced (alternatives sharing that prefix stay possible) until one alternative is complete.
//  - Strict start: when the tokens left in the budget only just fit the constraints still missing
//    (sum of their shortest alternatives), the next token must start one of them (an alternative
//    that still fits; the shortest ones when none does).
//  - EOS is banned while a constraint is unmet.
// Rows whose allowed tokens all carry -inf get 0 on them instead, as transformers'
// PrefixConstrainedLogitsProcessor does for an unsatisfiable row.
// The per-row state (progress per alternative, met constraints) lives on the device and is updated
// from the chosen tokens without a host sync; host loops only run over the constraint list.
#include <algorithm>
#include <string>

#include "generation/processors/common.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

using processors::ids_mask;
using processors::neg_inf;
using processors::vocab_mask;

constexpr int kBig = 1 << 29;

class ForceWordsProcessor : public LogitsProcessor {
 public:
  ForceWordsProcessor(const ForceWords& words, std::vector<int> eos, int budget_new, int max_length, int context)
      : eos_(std::move(eos)), budget_new_(budget_new), max_length_(max_length), context_(context) {
    if (words.empty()) fail("config", "force_words_ids must not be empty");
    std::vector<int> len, cidx;
    int max_len = 0;
    for (auto& c : words) {
      if (c.empty()) fail("config", "force_words_ids must not contain an empty constraint");
      for (auto& alt : c) {
        if (alt.empty()) fail("config", "force_words_ids must not contain an empty token list");
        for (int id : alt)
          if (id < 0) fail("config", "force_words_ids token id " + std::to_string(id) + " is negative");
        max_len = std::max(max_len, static_cast<int>(alt.size()));
      }
    }
    const int n_c = static_cast<int>(words.size());
    std::vector<int> table, first, item_min;
    std::vector<uint8_t> member;
    std::vector<int> min_len(n_c, kBig);
    for (int c = 0; c < n_c; ++c)
      for (auto& alt : words[c]) min_len[c] = std::min(min_len[c], static_cast<int>(alt.size()));
    for (int c = 0; c < n_c; ++c) {
      for (auto& alt : words[c]) {
        for (int j = 0; j <= max_len; ++j) table.push_back(j < static_cast<int>(alt.size()) ? alt[j] : -1);
        len.push_back(static_cast<int>(alt.size()));
        first.push_back(alt[0]);
        item_min.push_back(min_len[c]);
        for (int k = 0; k < n_c; ++k) member.push_back(k == c);
        max_id_ = std::max(max_id_, *std::max_element(alt.begin(), alt.end()));
      }
    }
    items_ = static_cast<int>(len.size());
    constraints_ = n_c;
    width_ = max_len + 1;
    table_ = mx::array(table.data(), {items_ * width_}, mx::int32);
    len_ = mx::array(len.data(), {1, items_}, mx::int32);
    first_ = mx::array(first.data(), {1, items_}, mx::int32);
    item_min_ = mx::array(item_min.data(), {1, items_}, mx::int32);
    member_ = mx::astype(mx::array(member.data(), {1, items_, n_c}, mx::uint8), mx::bool_);
  }

  void on_prompt(const mx::array& ids) override {
    rows_ = ids.shape(0);
    const int prompt = ids.shape(1);
    // The budget the Generator uses: max_new_tokens, else max_length - prompt, capped by the context.
    budget_ = budget_new_ > 0 ? budget_new_ : max_length_ - prompt;
    if (context_ > 0) budget_ = std::min(budget_, context_ - prompt);
    progress_ = mx::zeros({rows_, items_}, mx::int32);
    met_ = mx::zeros({rows_, constraints_}, mx::bool_);
    steps_ = 0;
  }

  void check_vocabulary(int v) const override {
    if (max_id_ >= v)
      fail("generate", "force_words_ids token id " + std::to_string(max_id_) + " is outside the vocabulary (size " +
                           std::to_string(v) + ")");
  }

  mx::array apply(const mx::array& logits, const mx::array&) override {
    if (!progress_) fail("generate", "force_words_ids: on_prompt() was not called");
    const int b = logits.shape(0), v = logits.shape(-1);
    if (b != rows_) fail("generate", "force_words_ids: batch size changed during generation");
    check_vocabulary(v);
    auto k = *progress_;
    auto met = *met_;
    auto met_item = item_met(met);                             // [B, I]
    auto active = mx::greater(k, mx::array(0));                // [B, I] (never set on met constraints)
    auto any_active = mx::any(active, -1, true);               // [B, 1]
    auto unmet_any = mx::any(mx::logical_not(met), -1, true);  // [B, 1]

    // Forced continuations: each active alternative's next token.
    auto cont = mx::where(active, next_tokens(k), mx::array(v, mx::int32));
    auto cont_mask = ids_mask(cont, v);

    // Tokens still needed: per unmet constraint, the least left of its active alternatives, or its
    // shortest alternative when none is active.
    auto c_active = mx::any(mx::logical_and(mx::expand_dims(active, 2), member_), 1);        // [B, C]
    auto in_active_c = mx::any(mx::logical_and(mx::expand_dims(c_active, 1), member_), -1);  // [B, I]
    auto cand = mx::where(active, mx::subtract(len_, k), mx::where(in_active_c, mx::array(kBig), len_));
    auto need_c = mx::min(mx::where(member_, mx::expand_dims(cand, 2), mx::array(kBig)), 1);  // [B, C]
    auto needed = mx::sum(mx::where(met, mx::array(0), need_c), -1, true);                    // [B, 1]
    const int left = budget_ - steps_;
    auto strict = mx::logical_and(mx::logical_and(mx::logical_not(any_active), unmet_any),
                                  mx::greater_equal(needed, mx::array(left)));
    // Strict start: alternatives of unmet constraints that still fit the budget (else the shortest).
    auto unmet_item = mx::logical_not(met_item);
    auto fits =
        mx::logical_and(unmet_item, mx::less_equal(mx::add(mx::subtract(len_, item_min_), needed), mx::array(left)));
    auto shortest = mx::logical_and(unmet_item, mx::equal(len_, item_min_));
    auto start_ok = mx::where(mx::any(fits, -1, true), fits, shortest);
    auto start_mask = ids_mask(mx::where(start_ok, first_, mx::array(v, mx::int32)), v);

    auto restrict = mx::logical_or(any_active, strict);           // [B, 1]
    auto allowed = mx::where(any_active, cont_mask, start_mask);  // [B, V]
    // Outside a forced word, EOS waits for every constraint.
    auto eos = mx::reshape(vocab_mask(v, eos_), {1, v});
    auto keep = mx::where(restrict, allowed, mx::logical_not(mx::logical_and(unmet_any, eos)));
    auto out = mx::where(keep, logits, neg_inf());
    // An unsatisfiable row (every kept token already -inf) gets 0 on its kept tokens.
    auto dead = mx::logical_not(mx::any(mx::greater(out, neg_inf()), -1, true));
    auto changed = mx::logical_or(restrict, unmet_any);
    return mx::where(mx::logical_and(dead, changed), mx::where(keep, mx::array(0.0f, logits.dtype()), neg_inf()), out);
  }

  void on_token(const mx::array& tokens) override {
    if (!progress_) return;
    auto t = mx::reshape(mx::astype(tokens, mx::int32), {rows_, 1});
    auto k = *progress_;
    auto met_item = item_met(*met_);
    auto active = mx::greater(k, mx::array(0));
    auto advance = mx::logical_and(active, mx::equal(next_tokens(k), t));
    auto start =
        mx::logical_and(mx::logical_and(mx::logical_not(advance), mx::equal(first_, t)), mx::logical_not(met_item));
    auto nk = mx::where(advance, mx::add(k, mx::array(1)), mx::where(start, mx::array(1), mx::array(0)));
    auto complete = mx::logical_and(mx::greater(nk, mx::array(0)), mx::equal(nk, len_));  // [B, I]
    auto newly = mx::any(mx::logical_and(mx::expand_dims(complete, 2), member_), 1);      // [B, C]
    met_ = mx::logical_or(*met_, newly);
    // A met constraint stops forcing every one of its alternatives.
    progress_ = mx::where(item_met(*met_), mx::array(0), nk);
    ++steps_;
  }

  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<ForceWordsProcessor>(*this); }

 private:
  // [B, C] met -> [B, I]: the item's constraint is met.
  mx::array item_met(const mx::array& met) const {
    return mx::any(mx::logical_and(mx::expand_dims(met, 1), member_), -1);
  }
  // table[i, k[b, i]]: each alternative's token after its progress (-1 past the end).
  mx::array next_tokens(const mx::array& k) const {
    auto base = mx::multiply(mx::arange(items_, mx::int32), mx::array(width_));
    return mx::take(table_, mx::add(mx::reshape(base, {1, items_}), mx::minimum(k, mx::array(width_ - 1))));
  }

  std::vector<int> eos_;
  int budget_new_, max_length_, context_;
  int items_ = 0, constraints_ = 0, width_ = 0, max_id_ = 0;
  mx::array table_ = mx::array(0), len_ = mx::array(0), first_ = mx::array(0), item_min_ = mx::array(0),
            member_ = mx::array(0);
  int rows_ = 0, budget_ = 0, steps_ = 0;
  std::optional<mx::array> progress_, met_;
};

}  // namespace

std::unique_ptr<LogitsProcessor> make_force_words(const ForceWords& words, std::vector<int> eos,
                                                  std::optional<int> max_new_tokens, int max_length, int context) {
  return std::make_unique<ForceWordsProcessor>(words, std::move(eos), max_new_tokens.value_or(0), max_length, context);
}

}  // namespace mlxgp
