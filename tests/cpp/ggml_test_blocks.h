// Random llama.cpp blocks for the kernel tests: any bytes, with the fp16 scales kept finite and modest.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <mlx/mlx.h>

#include "kernels/ggml_blocks.h"

namespace mlxgp::testing {

namespace mx = mlx::core;
namespace k = mlxgp::kernels;

// Offsets of the fp16 super-block scales in each block (ggml-common.h); other bytes are any value.
inline std::vector<int> half_offsets(uint32_t type) {
  switch (type) {
    case k::kGgmlQ2_K:
      return {80, 82};
    case k::kGgmlQ3_K:
      return {108};
    case k::kGgmlQ6_K:
      return {208};
    case k::kGgmlQ4_1:
    case k::kGgmlQ5_1:
    case k::kGgmlQ4_K:
    case k::kGgmlQ5_K:
      return {0, 2};
    default:
      return {0};
  }
}

// Random blocks with finite, modest scales: uint8 [rows, K / block * bytes]. The fp16 scales lie in
// [half_base, half_base + 0x1000): about 0.008 .. 0.12 by default; a model's layers want smaller ones
// (0x1400: about 0.001 .. 0.008), or its activations grow until attention saturates.
inline mx::array random_blocks(uint32_t type, int rows, int K, uint32_t seed, uint16_t half_base = 0x2000) {
  const k::GgmlBlock b = k::ggml_block(type);
  const int row_bytes = K / b.elements * b.bytes;
  std::vector<uint8_t> data(static_cast<size_t>(rows) * row_bytes);
  std::mt19937 rng(seed);
  for (auto& v : data) v = static_cast<uint8_t>(rng());
  for (size_t blk = 0; blk < data.size() / b.bytes; ++blk)
    for (int off : half_offsets(type)) {
      const uint16_t h = half_base + rng() % 0x1000;
      std::memcpy(&data[blk * b.bytes + off], &h, 2);
    }
  return mx::array(data.data(), {rows, row_bytes}, mx::uint8);
}

}  // namespace mlxgp::testing
