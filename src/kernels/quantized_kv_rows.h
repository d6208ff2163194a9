// Rows of an MLX-affine quantized KV cache (QuantizedKVCache, mx::quantize's layout) on the CPU:
// dequantized into floats for decode attention, and new rows quantized as mx::quantize does
// (quantized_kv_rows.cpp).
#pragma once

#include <cstdint>

namespace mlxgp::kernels {

// One quantized cache tensor [B, H, T, ...] read in place. Row (b, h, j) holds D * bits / 32 uint32 words
// (element e in bits (e * bits) % 32 of word e * bits / 32, as mx::quantize packs 2, 4 and 8 bits) and
// D / group scales and biases: element e is scales[e / group] * q_e + biases[e / group].
struct QuantizedRows {
  const uint32_t* data = nullptr;
  const float* scales = nullptr;
  const float* biases = nullptr;
  int64_t ds[3] = {}, ss[3] = {}, bs[3] = {};  // strides over (b, h, j): data in words, scales, biases in floats
  int bits = 0, group = 0;
};

// The widths dequantize_rows reads: those whose elements never straddle two words.
constexpr bool quantized_rows_bits_supported(int bits) { return bits == 2 || bits == 4 || bits == 8; }

// Rows [j0, j1) of (b, h), D floats each (D a multiple of 8 and of the group), into out[(j - j0) * D + e].
// Each row asks for the one a fixed distance ahead, up to row `ahead_end` (the caller's last row + 1): a
// task's rows are a few KB of one (batch row, head) after another's, too short a stream for the hardware
// prefetcher to lock on (without this, every row's first load stalled: 20% of a batch-8 decode's samples).
// x86-64 only (AVX2), as decode attention.
void dequantize_rows(const QuantizedRows& q, int b, int h, int j0, int j1, int D, float* out, int ahead_end);
// Asks for the first rows of [j0, j1) of (b, h), as far as dequantize_rows looks ahead (a task's first rows,
// before its first dequantize_rows).
void prefetch_quantized_rows(const QuantizedRows& q, int b, int h, int j0, int j1, int D);

// One row of D floats quantized as mx::quantize does on the CPU (MLX 0.32's affine quantize, so the bits
// equal the op's): per group, the scale spans [min, max] in 2^bits - 1 steps, signed so that the edge of
// larger magnitude is a whole number of steps and becomes the bias. Writes D * bits / 32 words and D /
// group scales and biases. Portable (the fused decode step writes a quantized cache's new rows with it).
void quantize_row(const float* x, int D, int group, int bits, uint32_t* data, float* scales, float* biases);

}  // namespace mlxgp::kernels
