#include "generation/core/step_recorder.h"

#include <algorithm>

#include <mlx/mlx.h>

namespace mx = mlx::core;

namespace mlxgp {

void StepRecorder::record(const mx::array& raw, const mx::array& scores, const mx::array& tokens) {
  if (logits_) logit_steps_.push_back(raw);
  if (scores_) score_steps_.push_back(scores);
  if (logprobs_) {
    // log_softmax(scores)[token] = scores[token] - logsumexp(scores), on the processed scores HF
    // returns as `scores`.
    auto picked = mx::take_along_axis(scores, mx::expand_dims(tokens, -1), -1);
    logprob_steps_.push_back(mx::squeeze(mx::subtract(picked, mx::logsumexp(scores, -1, true)), -1));
  }
  if (top_k_ >= 0) {
    auto lp = mx::subtract(scores, mx::logsumexp(scores, -1, true));  // [R, V]
    auto chosen = mx::squeeze(mx::take_along_axis(lp, mx::expand_dims(tokens, -1), -1), -1);
    chosen_steps_.push_back(mx::contiguous(mx::astype(chosen, mx::float32)));
    const int vocab = lp.shape(-1), k = std::min(top_k_, vocab);
    if (k > 0) {
      // The k largest (unordered; top() sorts them): argpartition of -lp puts them first. Gathered, not
      // sliced: a slice of one row would be a view that keeps the whole [V] partition alive every step.
      auto idx = mx::take(mx::argpartition(mx::negative(lp), k - 1, -1), mx::arange(k, mx::int32), -1);
      top_id_steps_.push_back(mx::contiguous(mx::astype(idx, mx::int32)));
      top_value_steps_.push_back(mx::contiguous(mx::astype(mx::take_along_axis(lp, idx, -1), mx::float32)));
    }
  }
}

TokenLogprobs StepRecorder::top(int step, int row) const {
  TokenLogprobs out;
  if (step < 0 || step >= static_cast<int>(chosen_steps_.size())) return out;
  out.logprob = chosen_steps_[step].data<float>()[row];
  if (step < static_cast<int>(top_id_steps_.size())) {
    const auto& ids = top_id_steps_[step];
    const int k = ids.shape(-1);
    const int32_t* i = ids.data<int32_t>() + static_cast<size_t>(row) * k;
    const float* v = top_value_steps_[step].data<float>() + static_cast<size_t>(row) * k;
    for (int j = 0; j < k; ++j) out.top.emplace_back(i[j], v[j]);
    std::stable_sort(out.top.begin(), out.top.end(),
                     [](auto& a, auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
  }
  return out;
}

std::vector<mx::array> StepRecorder::last() const {
  std::vector<mx::array> out;
  for (auto* v : {&logit_steps_, &score_steps_, &logprob_steps_, &chosen_steps_, &top_id_steps_, &top_value_steps_})
    if (!v->empty()) out.push_back(v->back());
  return out;
}

void StepRecorder::truncate(int n) {
  for (auto* v : {&logit_steps_, &score_steps_, &logprob_steps_, &chosen_steps_, &top_id_steps_, &top_value_steps_})
    if (static_cast<int>(v->size()) > n) v->resize(n, mx::array(0));
}

std::optional<mx::array> StepRecorder::cut(const std::vector<mx::array>& steps, int row, int n) {
  n = std::min(n, static_cast<int>(steps.size()));
  if (n <= 0) return std::nullopt;
  auto all = mx::stack(std::vector<mx::array>(steps.begin(), steps.begin() + n), 0);  // [n, R, ...]
  mx::Shape start(all.ndim(), 0), stop = all.shape();
  start[1] = row;
  stop[1] = row + 1;
  // A row is a strided view of the stack: copy it so its data is one row-major block.
  return mx::contiguous(mx::squeeze(mx::slice(all, start, stop), 1));
}

std::vector<float> StepRecorder::logprobs(int row, int n) const {
  auto a = cut(logprob_steps_, row, n);
  if (!a) return {};
  auto f = mx::contiguous(mx::astype(*a, mx::float32));
  mx::eval(f);
  return {f.data<float>(), f.data<float>() + f.size()};
}

void StepRecorder::fill(GeneratedSequence& seq, int row) const {
  const int n = static_cast<int>(seq.token_ids.size());
  seq.scores = scores(row, n);
  seq.logits = logits(row, n);
  if (seq.scores) seq.token_scores = chosen_entries(*seq.scores, seq.token_ids);
  if (seq.logits) seq.token_logits = chosen_entries(*seq.logits, seq.token_ids);
  seq.logprobs = logprobs(row, n);
}

std::vector<float> chosen_entries(const mx::array& steps, const std::vector<int>& tokens) {
  mx::array idx(tokens.data(), {static_cast<int>(tokens.size()), 1}, mx::int32);
  auto f = mx::contiguous(mx::astype(mx::take_along_axis(steps, idx, 1), mx::float32));
  mx::eval(f);
  return {f.data<float>(), f.data<float>() + f.size()};
}

}  // namespace mlxgp
