// LFM2's gated short convolution (transformers' Lfm2ShortConv, mlx-lm's ShortConv): B, C, x = in_proj(h) in three
// equal parts; y = out_proj(C * conv(B * x)), conv a causal depthwise convolution over the last `kernel` positions
// of B * x. Its RecurrentCache keeps the last kernel - 1 positions of B * x (zeros before the first token).
#pragma once

#include <optional>
#include <string>

#include "models/layers.h"

namespace mlxgp::layers {

// torch's depthwise conv1d (a cross-correlation) over `full` [B, K - 1 + T, D] (the K - 1 positions before the
// forward's T, then its own) with `weight` stored as [D, 1, K], [D, K, 1] or [D, K]: out[t] = sum_k w[k] full[t + k],
// [B, T, D] in full's dtype (summed in float32, rounded once).
mx::array causal_depthwise_conv(const mx::array& full, const mx::array& weight, int T);
// A depthwise kernel of `channels` x `kernel` values as transformers' Conv1d keeps it ([channels, 1, kernel]), as
// mlx-lm's ([channels, kernel, 1]) or as GGUF's ([channels, kernel]), kept as stored: an op made here would run on
// the loading thread's stream, which a server's worker thread does not have.
mx::array load_conv_kernel(const WeightMap& w, const std::string& name, int channels, int kernel);

struct ShortConv {
  Linear in_proj, out_proj;
  mx::array weight = mx::array(0.0f);  // as stored (hidden x kernel values)
  std::optional<mx::array> bias;       // [hidden] (conv_bias)
  int hidden = 0, kernel = 0;
  // Reads prefix.in_proj / .out_proj / .conv.weight, the convolution stored as transformers' Conv1d keeps it
  // ([hidden, 1, kernel]) or as mlx-lm's ([hidden, kernel, 1]), or [hidden, kernel] (GGUF).
  static ShortConv load(const WeightMap& w, const std::string& prefix, const ModelConfig& c);
  // x [B, T, hidden]. `cache` must be a RecurrentCache (it takes the new state and counts the positions), or
  // a cache that keeps nothing at offset 0 (training's single forward): the convolution then starts from zeros.
  mx::array operator()(const mx::array& x, KVCache& cache) const;
};

}  // namespace mlxgp::layers
