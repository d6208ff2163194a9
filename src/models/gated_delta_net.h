// The gated delta rule mixer of Qwen3-Next and Qwen3.5 (transformers' Qwen3NextGatedDeltaNet / Qwen3_5GatedDeltaNet,
// mlx-lm's GatedDeltaNet): q, k, v through a causal depthwise convolution and SiLU; per value head a state S
// [key dim, value dim] that decays by exp(g) and learns v - S^T k at rate beta each position (the delta rule), read
// by the position's query; the output RMS-normed per head, times silu(z), through out_proj. Its RecurrentCache keeps
// the convolution's last kernel - 1 inputs (slot 0) and S (slot 1, float32).
#pragma once

#include <optional>
#include <string>

#include "models/layers.h"

namespace mlxgp::layers {

struct GatedDeltaNet {
  // qwen3_next: in_proj_qkvz and in_proj_ba, grouped by key head ([q, k, v..., z...] and [b..., a...] per key head);
  // qwen3_5 (and llama.cpp's qwen3next files, whose converter splits in_proj_qkvz): in_proj_qkv ([q; k; v]) and
  // in_proj_z; in_proj_b and in_proj_a.
  std::optional<Linear> in_qkvz, in_ba, in_qkv, in_z, in_b, in_a;
  Linear out_proj;
  mx::array conv_weight = mx::array(0.0f);  // [conv channels x kernel], as stored (short_conv.h)
  // [value heads]: transformers' A_log, or (llama.cpp's ssm_a, which the converter stores so) A = -exp(A_log).
  std::optional<mx::array> a_log, a;
  mx::array dt_bias = mx::array(0.0f);      // [value heads]
  mx::array norm_weight = mx::array(0.0f);  // [value head dim]
  float eps = 1e-6f;
  int key_heads = 0, value_heads = 0, key_dim = 0, value_dim = 0, kernel = 0;
  bool tiled = false;  // ModelConfig::linear_value_heads_tiled
  int conv_channels() const { return 2 * key_heads * key_dim + value_heads * value_dim; }
  // Reads prefix.* (model.layers.N.linear_attn; A_log, or A from a GGUF file).
  static GatedDeltaNet load(const WeightMap& w, const std::string& prefix, const ModelConfig& c);
  // x [B, T, hidden]. `cache` must be a RecurrentCache with two slots, or a cache that keeps nothing at offset 0
  // (training's single forward): the layer then starts from zeros.
  mx::array operator()(const mx::array& x, KVCache& cache) const;
};

}  // namespace mlxgp::layers
