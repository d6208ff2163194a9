// The packed half of the quantized row kernels' arguments (qmm_cpu.h's QmmArgs: weight, scales, biases and
// their format) from MLX arrays, shared by the 2-D product (quantized_matmul.cpp) and the stacked experts'
// (gather_qmm.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <mlx/mlx.h>

#include "kernels/qmm_cpu.h"
#include "kernels/row_major.h"

namespace mlxgp::kernels {

namespace mx = mlx::core;

inline ScaleType scale_type(mx::Dtype t, const std::string& mode) {
  if (mode == "mxfp4" || mode == "mxfp8") return ScaleType::e8m0;
  if (mode == "nvfp4") return ScaleType::e4m3;
  if (t == mx::float16) return ScaleType::f16;
  if (t == mx::bfloat16) return ScaleType::bf16;
  return ScaleType::f32;
}

// Scales/biases are 2- or 4-byte floats (or bytes, microscaling); copy them as raw 8-, 16- or 32-bit words.
inline const void* scale_data(const mx::array& a, std::vector<uint32_t>& c32, std::vector<uint16_t>& c16,
                              std::vector<uint8_t>& c8) {
  if (a.flags().row_contiguous) return a.data<void>();
  if (a.itemsize() == 1) {
    c8.resize(a.size());
    gather_row_major(a, c8.data());
    return c8.data();
  }
  if (a.itemsize() == 4) {
    c32.resize(a.size());
    gather_row_major(a, c32.data());
    return c32.data();
  }
  c16.resize(a.size());
  gather_row_major(a, c16.data());
  return c16.data();
}

// The packed weight's half of QmmArgs (w, scales, biases and their format), with the row-major copies
// it may need kept alive alongside.
struct PackedWeight {
  RowMajor<uint32_t> w;
  std::vector<uint32_t> s32, b32;
  std::vector<uint16_t> s16, b16;
  std::vector<uint8_t> s8, b8;
  PackedWeight(const mx::array& wq, const mx::array& scales, const std::optional<mx::array>& biases, int group_size,
               int bits, const std::string& mode, QmmArgs& a)
      : w(wq) {
    a.N = wq.shape(-2);  // [N, K * bits / 32], or stacked experts [E, N, K * bits / 32]
    a.K = static_cast<int>(wq.shape(-1) * 32 / bits);
    a.w = w.ptr;
    a.scales = scale_data(scales, s32, s16, s8);
    a.biases = biases ? scale_data(*biases, b32, b16, b8) : nullptr;
    a.scale_type = scale_type(scales.dtype(), mode);
    a.group_size = group_size;
    a.bits = bits;
  }
};

// The formats the row kernels multiply: affine 4 / 5 / 8 bits in groups of 32 / 64 with float scales and biases
// of one dtype; MLX's microscaling modes mxfp4, mxfp8 (e4m3 codes) and nvfp4 with uint8 scales and no biases.
inline bool packed_format_supported(const mx::array& scales, const std::optional<mx::array>& biases, int group_size,
                                    int bits, const std::string& mode) {
  if (mode == "affine") {
    const auto t = scales.dtype();
    return (bits == 4 || bits == 5 || bits == 8) && (group_size == 32 || group_size == 64) && biases &&
           (t == mx::float32 || t == mx::float16 || t == mx::bfloat16) && biases->dtype() == t;
  }
  const bool pair = (mode == "mxfp4" && bits == 4 && group_size == 32) ||
                    (mode == "mxfp8" && bits == 8 && group_size == 32) ||
                    (mode == "nvfp4" && bits == 4 && group_size == 16);
  return pair && !biases && scales.dtype() == mx::uint8;
}

// K must be a multiple of this: the 4-bit kernels step 32 elements at a time (two nvfp4 groups).
inline int packed_k_multiple(const std::string& mode) { return mode == "nvfp4" ? 32 : 1; }

// Bytes of one scale (or bias) of this type.
inline size_t scale_bytes(ScaleType t) {
  return t == ScaleType::f32 ? 4 : (t == ScaleType::f16 || t == ScaleType::bf16) ? 2 : 1;
}

}  // namespace mlxgp::kernels
