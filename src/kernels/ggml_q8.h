// llama.cpp's arithmetic for its legacy block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): the activations are quantized
// to 8 bits per block of 32 (as quantize_row_q8_0 / q8_1: d = max|x| / 127 stored as a half, q = x / d
// rounded to nearest even) and each block's product is an exact integer dot product (AVX-512 VNNI),
// scaled by d_w * d_x (plus m_w * d_x * sum(q_x) for Q4_1 / Q5_1, as ggml_vec_dot_q4_1_q8_1). An opt-in mode
// (LoadOptions::int8_activations): over weights repacked at load (ggml_q8_packed.cpp), faster than the
// fp32 row kernels at every M, but its logits follow llama.cpp's rounding of the activations rather than
// transformers'. The kernels over the blocks as stored (ggml_q8.cpp) serve what is not repacked: N not a
// multiple of 16, MoE experts, direct callers.
//
// One canonical float sequence per (row, output), whatever the batch: p_b = float(isum_b) * (d_w * d_x)
// [+ m_w * s_x], summed into four partials by block index mod 4 in block order, then (P0 + P1) + (P2 + P3).
// The one-row kernel (lanes = blocks) and the 8- and 16-row kernels (lanes = rows) all follow it, so a
// batch row's output equals its solo run bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/ggml_blocks.h"
#include "kernels/ggml_product.h"

namespace mlxgp::kernels {

// The block types the int8 kernels take (as llama.cpp's: Q8_0 activations for Q4_0 / Q5_0 / Q8_0 / IQ4_NL, Q8_1,
// with the sum, for Q4_1 / Q5_1; Q8_K, per 256 values, for Q4_K / Q5_K / Q6_K / IQ4_XS in ggml_q8k.cpp, whose
// float sequence that file states), and their names for messages.
// The K-quants among them: 256-value super-blocks, Q8_K activations, ggml_q8k.cpp's kernels.
inline bool ggml_q8k_type(uint32_t type) {
  return type == kGgmlQ4_K || type == kGgmlQ5_K || type == kGgmlQ6_K || type == kGgmlIQ4_XS;
}
inline bool ggml_q8_type(uint32_t type) {
  return type == kGgmlQ4_0 || type == kGgmlQ4_1 || type == kGgmlQ5_0 || type == kGgmlQ5_1 || type == kGgmlQ8_0 ||
         type == kGgmlIQ4_NL || ggml_q8k_type(type);
}
inline constexpr const char* kGgmlQ8Types = "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q4_K, Q5_K, Q6_K or IQ4_XS";

// Whether ggml_q8_product handles `type` on this machine (AVX-512 with VNNI; ggml_q8_type), and when not,
// what is missing ("int8 activations need ...").
bool ggml_q8_supported(uint32_t type);
std::string ggml_q8_unsupported_reason(uint32_t type);

// out_s[m, n] = x[m] . w_s[n] in that arithmetic for every segment (one type, one K): x [M, K] float32
// row-major (K a multiple of 32), quantized once; one parallel pass over all the segments' rows.
// Requires ggml_q8_supported(type).
void ggml_q8_product(uint32_t type, const float* x, int M, int K, const std::vector<GgmlSegment>& segs);
// The K-quants' products, pack and unpack (ggml_q8k.cpp), which the functions here hand Q4_K and Q6_K to.
void ggml_q8k_product(uint32_t type, const float* x, int M, int K, const std::vector<GgmlSegment>& segs);
void ggml_q8k_packed_product(uint32_t type, const float* x, int M, int K, const std::vector<GgmlSegment>& segs);
void ggml_q8k_pack(uint32_t type, const uint8_t* w, int N, int K, uint8_t* out);
void ggml_q8k_unpack(uint32_t type, const uint8_t* packed, int N, int K, uint8_t* w);

// The same products over weights repacked at load (ggml_q8_packed.cpp: 16 rows interleaved per block, the
// stored size), bit for bit equal to ggml_q8_product and faster at every M: the blocks of 16 rows are
// unpacked into registers once for all activation rows (the K-quants' records: ggml_q8k.cpp). Packable:
// ggml_q8_supported(type) and N a multiple of 16. pack / unpack map N rows of K values between the layouts; segs' w are
// packed.
bool ggml_q8_packable(uint32_t type, int N);
void ggml_q8_pack(uint32_t type, const uint8_t* w, int N, int K, uint8_t* out);
void ggml_q8_unpack(uint32_t type, const uint8_t* packed, int N, int K, uint8_t* w);
void ggml_q8_packed_product(uint32_t type, const float* x, int M, int K, const std::vector<GgmlSegment>& segs);

}  // namespace mlxgp::kernels
