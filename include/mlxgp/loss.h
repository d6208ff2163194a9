// Training losses: cross-entropy with torch's semantics and the next-token loss of a model on a batch.
#pragma once

#include <optional>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/model.h"

namespace mlxgp {

struct LossResult {
  mlx::core::array loss;      // scalar float32: the mean over counted targets
  mlx::core::array n_tokens;  // scalar int32: how many targets were counted
  // MoE models with output_router_logits: the load-balancing loss before router_aux_loss_coef (`loss`
  // already includes coef * aux_loss, as transformers' loss does).
  std::optional<mlx::core::array> aux_loss = std::nullopt;
};

// torch.nn.functional.cross_entropy(logits, targets, ignore_index=..., label_smoothing=...,
// reduction="mean"): logits [N, V] (or [..., V]), targets [N] (or [...]) int. With smoothing e the
// per-target loss is (1 - e) * nll + e * mean_v(-log p_v). Targets equal to ignore_index count for
// nothing; when none is counted the loss is NaN, as in torch. Throws [loss] on bad shapes/settings.
LossResult xent_loss(const mlx::core::array& logits, const mlx::core::array& targets, double label_smoothing = 0.0,
                     int ignore_index = -100);

// A right-padded batch: input_ids [B, T] int32; labels [B, T] (-100 = ignored; default: input_ids);
// loss_mask [B, T] (1 = the token is a target; pad positions 0). Next-token targets are labels
// shifted left by one, as transformers' causal-LM loss does. attention_mask [B, T] (1 = a real token,
// prompt tokens included; 0 = padding) must mark right padding (anything else is refused); it tells the
// MoE load-balancing loss which tokens to count, and right padding needs no mask for attention. As in
// transformers, it does not change which targets the loss counts (labels / loss_mask / pad_id do).
struct Batch {
  mlx::core::array input_ids;
  std::optional<mlx::core::array> labels;
  std::optional<mlx::core::array> loss_mask;
  std::optional<mlx::core::array> attention_mask = std::nullopt;
};

// transformers' load_balancing_loss_func: over all routed layers' router logits (each [..., experts],
// the same tokens in each), num_experts * sum_e f_e * P_e, where f_e is the share of top-k assignments
// to expert e and P_e its mean softmax probability, both over the tokens attention_mask (shaped like the
// logits' leading dims) marks, or over every token without one. The gradient flows through P only.
mlx::core::array load_balancing_loss(const std::vector<mlx::core::array>& router_logits, int num_experts, int top_k,
                                     const std::optional<mlx::core::array>& attention_mask = std::nullopt);

// The next-token targets of a batch, [B, T - 1] int32 (-100 where nothing is counted): labels (default:
// input_ids) shifted left by one, masked by loss_mask and pad_id. Checks what loss_forward checks of the
// ids and labels (integers, inside the vocabulary `vocab_size` when > 0) and throws [loss] otherwise.
mlx::core::array next_token_targets(const Batch& batch, std::optional<int> pad_id = std::nullopt, int vocab_size = 0);

// The model's mean next-token loss over the counted positions and their number. `pad_id`, when
// given, also excludes targets equal to it (so a batch padded with pad_id needs no mask). When the
// model's config has output_router_logits (MoE), the loss adds router_aux_loss_coef * the
// load-balancing loss over the tokens of batch.attention_mask (without one: the tokens unequal to
// pad_id when given, else all).
LossResult loss_forward(Model& model, const Batch& batch, double label_smoothing = 0.0,
                        std::optional<int> pad_id = std::nullopt);

}  // namespace mlxgp
