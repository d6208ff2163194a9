// load_balancing_loss: transformers' Switch-Transformer auxiliary loss (see mlxgp/loss.h).
#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/loss.h"

namespace mx = mlx::core;

namespace mlxgp {

mx::array load_balancing_loss(const std::vector<mx::array>& router_logits, int num_experts, int top_k,
                              const std::optional<mx::array>& attention_mask) {
  if (num_experts < 1 || top_k < 1 || top_k > num_experts)
    fail("loss", "load_balancing_loss needs 1 <= top_k <= num_experts");
  // transformers returns 0 when no layer routed anything (e.g. every qwen2_moe layer dense).
  if (router_logits.empty()) return mx::array(0.0f);
  std::optional<mx::array> mask;
  if (attention_mask) mask = mx::reshape(mx::astype(*attention_mask, mx::float32), {-1, 1});  // [N, 1]
  auto experts = mx::arange(num_experts, mx::int32);
  mx::array assigned = mx::zeros({num_experts}, mx::float32), prob_sum = mx::zeros({num_experts}, mx::float32);
  mx::array rows = mx::array(0.0f);
  for (auto& layer : router_logits) {
    if (layer.shape(-1) != num_experts) fail("loss", "router logits do not have num_experts columns");
    auto probs = mx::softmax(mx::reshape(mx::astype(layer, mx::float32), {-1, num_experts}), -1);  // [N, E]
    if (mask && mask->shape(0) != probs.shape(0))
      fail("loss", "the attention mask does not cover the router logits' tokens");
    // The top-k choice is discrete: counting it carries no gradient, as torch's histc / scatter_add.
    auto part = mx::argpartition(mx::negative(mx::stop_gradient(probs)), top_k - 1, -1);
    auto chosen = mx::slice(part, {0, 0}, {part.shape(0), top_k});                            // [N, k]
    auto one_hot = mx::astype(mx::equal(mx::expand_dims(chosen, -1), experts), mx::float32);  // [N, k, E]
    auto per_token = mx::sum(one_hot, 1);                                                     // [N, E]
    if (mask) {
      per_token = mx::multiply(per_token, *mask);
      probs = mx::multiply(probs, *mask);
      rows = mx::add(rows, mx::sum(*mask));
    } else {
      rows = mx::add(rows, mx::array(static_cast<float>(probs.shape(0))));
    }
    assigned = mx::add(assigned, mx::sum(per_token, 0));
    prob_sum = mx::add(prob_sum, mx::sum(probs, 0));
  }
  auto f = mx::divide(assigned, rows), p = mx::divide(prob_sum, rows);
  return mx::multiply(mx::sum(mx::multiply(f, p)), mx::array(static_cast<float>(num_experts)));
}

}  // namespace mlxgp
