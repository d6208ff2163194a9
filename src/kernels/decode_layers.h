// A decode step's pre-norm llama blocks as one CPU graph node (decode_layers.cpp). Each block otherwise
// takes a dozen graph nodes (the products' fused nodes, the head splits, the cache's slice updates and
// views, the attention), and at one position per row their graph building and scheduling cost about as
// much as the products themselves.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <mlx/array.h>

#include "kernels/kernels.h"

namespace mlxgp::kernels {

// One llama.cpp-block weight as its product reads it.
struct DecodeWeight {
  const mx::array* w = nullptr;  // the int8 repack where `packed`, else the blocks as stored [N, row bytes]
  uint32_t type = 0;
  bool int8 = false, packed = false;
};

// A pre-norm llama block at one position per batch row:
//   h = h + o(attention(rope(q(n)), rope(k(n)), v(n))) with n = rms_norm(h, input_norm),
//   h = h + down(silu(gate(n)) * up(n))                with n = rms_norm(h, post_norm).
struct DecodeLayer {
  const mx::array* input_norm = nullptr;
  const mx::array* post_norm = nullptr;
  float input_eps = 0, post_eps = 0;
  DecodeWeight q, k, v, o, gate, up, down;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
  std::optional<GgmlRope> rope;  // this step's positions; none: the layer has no rotary embedding
};

// A quantized cache's layout (QuantizedKVCache); bits 0: a float cache.
struct KvQuantization {
  int bits = 0, group = 0;
};

// Runs `layers` in turn on x [B, 1, hidden] (float32) and returns h. keys[i] / values[i] are layer i's
// cache buffers [rows >= B, KV heads, capacity, head_dim] (float32, row-contiguous, capacity > slot): the node
// writes the layer's new key and value at position `slot` of them in place (the caller holds them alone:
// StandardKVCache::writable) and attends to positions [key_start[b], slot] of row b (key_start may be
// empty). With `quant`, each layer has three buffers in keys (and in values), 3i to 3i + 2: the data,
// scales and biases of a quantized cache (QuantizedKVCache::writable), and the new rows are quantized as
// mx::quantize does. Every op is the kernel the block runs op by op (kernels::rms_norm, ggml_matmul and its
// fused node, kernels::rope, decode_attention or quantized_decode_attention, swiglu), so h and the cache
// hold the same bits.
mx::array decode_layers(const mx::array& x, const std::vector<DecodeLayer>& layers, const std::vector<mx::array>& keys,
                        const std::vector<mx::array>& values, int slot, const std::vector<int>& key_start,
                        KvQuantization quant = {});

// Whether decode_layers runs these (each op would be that kernel op by op: float32 on an AVX2 or AVX-512 CPU as the
// default device, products on the CPU block primitive, rotary dims even and within the head, head_dim a
// multiple of 8); otherwise the caller runs the blocks op by op.
bool decode_layers_supported(const mx::array& x, const std::vector<DecodeLayer>& layers,
                             const std::vector<mx::array>& keys, const std::vector<mx::array>& values, int slot,
                             KvQuantization quant = {});

}  // namespace mlxgp::kernels
