// llama.cpp's block quantization formats (ggml-common.h): type ids, block layouts, and row
// dequantizers ported from ggml-quants.c (dequantize_row_*), computing in fp32 as it does.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mlxgp::kernels {

// ggml_type ids (ggml.h) of the block formats handled here.
enum GgmlType : uint32_t {
  kGgmlF32 = 0,
  kGgmlF16 = 1,
  kGgmlQ4_0 = 2,
  kGgmlQ4_1 = 3,
  kGgmlQ5_0 = 6,
  kGgmlQ5_1 = 7,
  kGgmlQ8_0 = 8,
  kGgmlQ2_K = 10,
  kGgmlQ3_K = 11,
  kGgmlQ4_K = 12,
  kGgmlQ5_K = 13,
  kGgmlQ6_K = 14,
  kGgmlIQ4_NL = 20,
  kGgmlIQ4_XS = 23,
  kGgmlBF16 = 30,
};

// The 16 values an IQ4_NL / IQ4_XS code stands for, before the block's scale (kvalues_iq4nl in
// ggml-common.h): a non-uniform 4-bit grid, denser near zero where weights are.
inline constexpr int8_t kIq4NlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// The 6-bit scale (offset 32 not yet removed) of sub-block j (0..7) of an IQ4_XS block: its low 4 bits are
// nibble j % 2 of scales_l[j / 2], its top 2 bits field j of scales_h.
inline int iq4_xs_scale(const uint8_t* block, int j) {
  const int scales_h = block[2] | (block[3] << 8);
  return ((block[4 + j / 2] >> (4 * (j % 2))) & 0xF) | (((scales_h >> (2 * j)) & 3) << 4);
}

struct GgmlBlock {
  int elements = 0;  // values per block
  int bytes = 0;     // bytes per block
};

// Block layout of a type dequantize_ggml_row handles; {0, 0} for any other type.
GgmlBlock ggml_block(uint32_t type);

// Dequantizes one row of `k` values (k a multiple of the block size) into fp32.
void dequantize_ggml_row(uint32_t type, const uint8_t* src, float* dst, int64_t k);

// IEEE half -> float (the bit pattern as stored in ggml blocks), and the half stored at p.
float half_to_float(uint16_t h);
float half_at(const uint8_t* p);

// The 16 6-bit scales of a Q3_K block (offset 32 not yet removed) from its 12 packed scale bytes.
void unpack_q3_k_scales(const uint8_t* packed, int8_t* scales);

// get_scale_min_k4 (ggml-quants.c): the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K
// block, from its 12 packed scale bytes q.
void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m);

}  // namespace mlxgp::kernels
