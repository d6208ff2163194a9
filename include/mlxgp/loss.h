// Training losses: cross-entropy with torch's semantics and the next-token loss of a model on a batch.
#pragma once

#include <optional>

#include <mlx/array.h>

#include "mlxgp/model.h"

namespace mlxgp {

struct LossResult {
  mlx::core::array loss;      // scalar float32: the mean over counted targets
  mlx::core::array n_tokens;  // scalar int32: how many targets were counted
};

// torch.nn.functional.cross_entropy(logits, targets, ignore_index=..., label_smoothing=...,
// reduction="mean"): logits [N, V] (or [..., V]), targets [N] (or [...]) int. With smoothing e the
// per-target loss is (1 - e) * nll + e * mean_v(-log p_v). Targets equal to ignore_index count for
// nothing; when none is counted the loss is NaN, as in torch. Throws [loss] on bad shapes/settings.
LossResult xent_loss(const mlx::core::array& logits, const mlx::core::array& targets, double label_smoothing = 0.0,
                     int ignore_index = -100);

// A right-padded batch: input_ids [B, T] int32; labels [B, T] (-100 = ignored; default: input_ids);
// loss_mask [B, T] (1 = the token is a target; pad positions 0). Next-token targets are labels
// shifted left by one, as transformers' causal-LM loss does.
struct Batch {
  mlx::core::array input_ids;
  std::optional<mlx::core::array> labels;
  std::optional<mlx::core::array> loss_mask;
};

// The model's mean next-token loss over the counted positions and their number. `pad_id`, when
// given, also excludes targets equal to it (so a batch padded with pad_id needs no mask).
LossResult loss_forward(Model& model, const Batch& batch, double label_smoothing = 0.0,
                        std::optional<int> pad_id = std::nullopt);

}  // namespace mlxgp
