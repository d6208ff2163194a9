#include "generation/speculative/acceptance.h"

#include <limits>

#include <mlx/mlx.h>

namespace mx = mlx::core;

namespace mlxgp::speculative {

namespace {

// Number of leading true entries of a bool vector [k] (0 for k == 0).
mx::array leading_true(const mx::array& ok) {
  if (ok.size() == 0) return mx::array(0, mx::int32);
  return mx::astype(mx::sum(mx::cumprod(mx::astype(ok, mx::int32), 0)), mx::int32);
}

}  // namespace

Verdict match_candidates(const mx::array& candidates, const mx::array& target_tokens) {
  const int k = candidates.size();
  auto tokens = mx::astype(mx::reshape(target_tokens, {k + 1}), mx::int32);
  if (k == 0) return {mx::array(0, mx::int32), tokens};
  auto same = mx::equal(mx::astype(mx::reshape(candidates, {k}), mx::int32), mx::slice(tokens, {0}, {k}));
  return {leading_true(same), tokens};
}

Verdict rejection_sample(const mx::array& candidates, const mx::array& target_scores, const mx::array& draft_scores,
                         const mx::array& key) {
  const int k = candidates.size();
  const int vocab = target_scores.shape(-1);
  auto keys = mx::random::split(key, 3);
  auto key_at = [&](int i) { return mx::reshape(mx::slice(keys, {i, 0}, {i + 1, 2}), {2}); };
  // The bonus token: a draw from the target's last distribution (categorical takes unnormalised scores).
  auto bonus = mx::random::categorical(mx::slice(target_scores, {k, 0}, {k + 1, vocab}), -1, key_at(0));
  bonus = mx::astype(mx::reshape(bonus, {1}), mx::int32);
  if (k == 0) return {mx::array(0, mx::int32), bonus};

  auto p = mx::softmax(mx::slice(target_scores, {0, 0}, {k, vocab}), -1, /*precise=*/true);
  auto q = mx::softmax(draft_scores, -1, /*precise=*/true);
  auto c = mx::reshape(mx::astype(candidates, mx::int32), {k, 1});
  auto p_c = mx::reshape(mx::take_along_axis(p, c, 1), {k});
  auto q_c = mx::reshape(mx::take_along_axis(q, c, 1), {k});
  auto r = mx::random::uniform(mx::array(0.0f), mx::array(1.0f), {k}, mx::float32, key_at(1));
  // r <= p/q, written r * q <= p so that q = 0 (cannot happen for a drafted token) is not a division.
  auto accepted = leading_true(mx::less_equal(mx::multiply(r, q_c), p_c));

  // Residual distribution of every position (only the first rejected one is used).
  auto residual = mx::maximum(mx::subtract(p, q), mx::array(0.0f));
  auto mass = mx::sum(residual, -1, true);
  // p == q leaves no residual mass; a rejection is then impossible (p/q = 1), so any row will do.
  residual = mx::where(mx::greater(mass, mx::array(0.0f)), residual, p);
  auto log_residual = mx::log(residual);  // log(0) = -inf: never drawn
  auto draws = mx::astype(mx::random::categorical(log_residual, -1, key_at(2)), mx::int32);  // [k]
  return {accepted, mx::concatenate({draws, bonus}, 0)};
}

}  // namespace mlxgp::speculative
