// Custom CPU kernels that replace slow generic MLX CPU paths on the decode hot path.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <vector>

#include <mlx/mlx.h>

namespace mlxgp::kernels {

namespace mx = mlx::core;

// Same contract as mx::quantized_matmul(x, w, scales, biases, /*transpose=*/true, group_size, bits)
// in "affine" mode: y = x @ dequantize(w)^T. Runs a multithreaded SIMD kernel when the default
// device is the CPU and the case is supported (float32 x; 2-D w; 4, 5 or 8 bits; group size 32 or
// 64; float32/float16/bfloat16 scales and biases); anything else goes to mx::quantized_matmul.
// From kQmmGemmRows rows of x on (prefill) it dequantizes w to float32 and multiplies with BLAS.
inline constexpr int kQmmGemmRows = 96;
mx::array quantized_matmul(const mx::array& x, const mx::array& w, const mx::array& scales, const mx::array& biases,
                           int group_size, int bits);

// True when quantized_matmul would use the custom kernel for these arguments.
bool quantized_matmul_supported(const mx::array& x, const mx::array& w, const mx::array& scales,
                                const mx::array& biases, int group_size, int bits);

// The same for MLX's quantization modes: `mode` "affine" (biases required) as above, or the microscaling modes
// "mxfp4" (e2m1 codes, e8m0 scales per 32), "mxfp8" (e4m3 codes, e8m0 scales per 32) and "nvfp4" (e2m1, e4m3
// scales per 16), uint8 scales and no biases, on the same row kernels with each code's value decoded
// (qmm_cpu.h); anything else goes to mx::quantized_matmul(x, w, scales, biases, true, group_size, bits, mode).
mx::array quantized_matmul(const mx::array& x, const mx::array& w, const mx::array& scales,
                           const std::optional<mx::array>& biases, int group_size, int bits, const std::string& mode);
bool quantized_matmul_supported(const mx::array& x, const mx::array& w, const mx::array& scales,
                                const std::optional<mx::array>& biases, int group_size, int bits,
                                const std::string& mode);

// llama.cpp block formats kept as stored (ggml type ids: Q2_K 10, Q3_K 11, Q6_K 14, IQ4_NL 20, IQ4_XS 23, and the
// others kernels/ggml_blocks.h lists): w [..., K / block * block_bytes] uint8, one row of blocks per output.
// ggml_matmul: y = x @ dequantize(w)^T (float32 result cast to x's dtype); decode-sized x on the CPU
// dequantizes tiles of rows into the dense kernel, anything else dequantizes w and multiplies.
// ggml_dequantize: float32 [..., K] with ggml-quants.c's arithmetic, always on the CPU stream.
bool ggml_type_supported(uint32_t type);
// Bytes of one row of K values in that format (0 when K is not a multiple of its block).
int ggml_row_bytes(uint32_t type, int K);
// int8_activations: llama.cpp's arithmetic (kernels/ggml_q8.h) at every M, for Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / Q4_K
// / Q6_K on an AVX-512 VNNI CPU as the default device; anything else throws [kernels]. `packed` (int8 activations
// only): w as ggml_q8_pack returned it, which the product then reads.
mx::array ggml_matmul(const mx::array& x, const mx::array& w, uint32_t type, bool int8_activations = false,
                      const std::optional<mx::array>& packed = std::nullopt);
// w's rows repacked for the int8-activation kernels (kernels/ggml_q8.h: bit for bit the same products,
// faster at every batch size), evaluated now; nullopt where they do not apply (another type, rows not a
// multiple of 16, no AVX-512 VNNI, a default device other than the CPU).
std::optional<mx::array> ggml_q8_pack(const mx::array& w, uint32_t type, int K);
mx::array ggml_dequantize(const mx::array& w, uint32_t type, int K);
// ggml_matmul_multi: ggml_matmul(x, w, type) for each of several weights of one type (q, k and v; gate and
// up), as one graph node and one parallel pass where ggml_matmul would use its CPU primitive for every one
// (each output equals ggml_matmul's bit for bit); otherwise one ggml_matmul each.
std::vector<mx::array> ggml_matmul_multi(const mx::array& x, const std::vector<mx::array>& ws, uint32_t type,
                                         bool int8_activations = false, const std::vector<mx::array>& packed = {});
// Ops a ggml_matmul_multi node can run around its products, each as the kernel that runs it alone
// (kernels::rms_norm, kernels::swiglu, then + residual), so results equal the ops one by one bit for bit:
// x normalised first (norm_weight, eps), silu(y0) * y1 of two products, residual + y of the one output.
// `rope` rotates outputs 0 and 1 (q and k, [B, T, heads x head_dim]) per head as kernels::rope rotates their
// head split: positions offset + t, or row_offsets[b] + t per batch row.
struct GgmlRope {
  int dims = 0, head_dim = 0;
  float base = 10000.0f, scale = 1.0f;
  int offset = 0;
  std::vector<int> row_offsets;
  bool operator==(const GgmlRope&) const = default;
};
struct GgmlFusion {
  std::optional<mx::array> norm_weight;
  float eps = 0;
  bool swiglu = false;
  std::optional<mx::array> residual;
  std::optional<GgmlRope> rope;
};
// ggml_matmul_multi with `fusion` in the same node where that node is the CPU primitive and the fused
// kernels run here (float32 x, residual of the output's shape and dtype); nullopt otherwise, and the caller
// runs the ops one by one. Throws [kernels] where ggml_matmul_multi would, and for a swiglu over other than
// two weights or a residual with several outputs. Differentiable in x, the norm's weight and the residual.
std::optional<std::vector<mx::array>> ggml_matmul_fused(const mx::array& x, const std::vector<mx::array>& ws,
                                                        uint32_t type, bool int8_activations,
                                                        const std::vector<mx::array>& packed, const GgmlFusion& fusion);
// mx::gather_qmm(x, w, scales, biases, nullopt, indices, true, group_size, bits, mode) for MLX-quantized stacked
// experts w [E, N, K * bits / 32] in the formats quantized_matmul's kernels take: x [..., 1, K] float32 broadcast
// against indices [...] -> [..., 1, N], each expert's rows read once for all the tokens routed to it
// (gather_qmm.cpp). Anything else (other shapes, dtypes, formats, or x under a transform) is MLX's op, with affine
// scales and biases cast to x's dtype as it requires.
mx::array gather_quantized_matmul(const mx::array& x, const mx::array& w, const mx::array& scales,
                                  const std::optional<mx::array>& biases, const mx::array& indices, int group_size,
                                  int bits, const std::string& mode);
bool gather_quantized_matmul_supported(const mx::array& x, const mx::array& w, const mx::array& scales,
                                       const std::optional<mx::array>& biases, const mx::array& indices, int group_size,
                                       int bits, const std::string& mode);

// ggml_gather_matmul: gather_mm(x, dequantize(w)^T, rhs_indices=indices) for stacked experts
// w [E, N, row bytes]: x [..., M, K] broadcast against indices [...] -> [..., M, N]. On the CPU each
// expert's blocks are read once for all the rows routed to it; elsewhere w is dequantized.
mx::array ggml_gather_matmul(const mx::array& x, const mx::array& w, const mx::array& indices, uint32_t type,
                             bool int8_activations = false);

// x @ w^T for a dense [N, K] weight (nn.Linear layout), float32 on the CPU: a streaming multithreaded
// SIMD kernel for at most kLinearMaxRows rows of x (decode, batches up to 16 rows; the fp32 folder at
// batch 16: 139 -> 167 tok/s against BLAS sgemm from 9 rows on), register tiles over a transposed x
// for more (dense_gemm.cpp; fp32 prefill of 120 tokens 550 -> 1,015 tok/s against BLAS). 16-bit floats
// run as float32; otherwise mx::matmul.
inline constexpr int kLinearMaxRows = 16;
mx::array linear(const mx::array& x, const mx::array& w);
bool linear_supported(const mx::array& x, const mx::array& w);

// silu(gate) * up (the llama-family MLP activation): one multithreaded AVX2 pass for float32 on the
// CPU, otherwise MLX's ops. Differentiable (training uses it too).
mx::array swiglu(const mx::array& gate, const mx::array& up);
bool swiglu_supported(const mx::array& gate, const mx::array& up);

// x * rsqrt(mean(x^2, -1) + eps) * w (mx::fast::rms_norm) as one CPU primitive for float32 x [..., D]
// and w [D]: the squares summed in double as ggml's rms_norm does; otherwise mx::fast::rms_norm.
// Differentiable.
mx::array rms_norm(const mx::array& x, const mx::array& w, float eps);
bool rms_norm_supported(const mx::array& x, const mx::array& w);

// Scaled dot-product attention (q [B, Hq, Tq, D], k/v [B, Hk, Tk, D], Hq a multiple of Hk) with no
// mask or a causal one aligned to the last key, as mx::fast::scaled_dot_product_attention's "causal".
// `key_start` (one per batch entry, or empty): keys before it are hidden too (a left-padded batch).
// For float32 prefill shapes (Tq > 1, or any Tq with key_start) on the CPU: the tiled prefill kernel
// (prefill_attention.h; under a transformation, and for head sizes not a multiple of 8, BLAS products
// around a vectorised masked softmax); one query: decode_attention; otherwise the MLX op. Differentiable.
mx::array attention(const mx::array& q, const mx::array& k, const mx::array& v, float scale, bool causal,
                    const std::vector<int>& key_start = {});
bool attention_supported(const mx::array& q, const mx::array& k, const mx::array& v, bool single_query = false);

// The single-query case of attention (q [B, Hq, 1, D], any mask reduces to `key_start`): one float32
// CPU primitive reading the cache's strided keys and values in place, every thread on (row, KV head)
// tasks. attention() routes here by itself when D is a multiple of 8.
mx::array decode_attention(const mx::array& q, const mx::array& k, const mx::array& v, float scale,
                           const std::vector<int>& key_start = {});
bool decode_attention_supported(const mx::array& q, const mx::array& k, const mx::array& v);

// A quantized KV cache's tensor as mx::quantize returns it (QuantizedKVCache): packed data [B, H, T, D *
// bits / 32] (uint32), scales and biases [B, H, T, D / group].
struct QuantizedArrays {
  mx::array data, scales, biases;
};

// decode_attention over a quantized cache (2, 4 or 8 bits; what mlx-lm's
// quantized_scaled_dot_product_attention computes for one query): each task dequantizes its rows of keys
// and values into buffers that stay in cache, then runs decode_attention's arithmetic, so DRAM delivers
// the quantized bytes. float32 queries on the CPU, not under a transformation (no gradient).
mx::array quantized_decode_attention(const mx::array& q, const QuantizedArrays& k, const QuantizedArrays& v,
                                     float scale, int group_size, int bits, const std::vector<int>& key_start = {});
bool quantized_decode_attention_supported(const mx::array& q, const QuantizedArrays& k, const QuantizedArrays& v,
                                          int group_size, int bits);
// The prefill form (q [B, Hq, Tq, D], causal aligned to the last key as kernels::attention, key_start for
// a left-padded batch): the tiled prefill attention with each 64-key tile dequantized in L1.
mx::array quantized_prefill_attention(const mx::array& q, const QuantizedArrays& k, const QuantizedArrays& v,
                                      float scale, bool causal, int group_size, int bits,
                                      const std::vector<int>& key_start = {});
bool quantized_prefill_attention_supported(const mx::array& q, const QuantizedArrays& k, const QuantizedArrays& v,
                                           int group_size, int bits);

// Rotary position embedding in the "rotate half" layout (transformers apply_rotary_pos_emb;
// mx::fast::rope with traditional=false) over x [B, H, T, D]: feature pairs (i, i + dims/2), i < dims/2,
// of position offset + t rotate by (offset + t) * scale / base^(2i/dims); features from dims on pass
// through. float32 on the CPU; otherwise mx::fast::rope. Differentiable.
mx::array rope(const mx::array& x, int dims, float base, float scale, int offset);
// The same with each batch row starting at its own position (left-padded batches).
mx::array rope(const mx::array& x, int dims, float base, float scale, const std::vector<int>& row_offsets);
bool rope_supported(const mx::array& x, int dims);

// True when the custom kernels run at all: an x86-64 CPU with AVX2+FMA (or AVX-512) and
// MLXGP_DISABLE_KERNELS unset. Elsewhere every entry point forwards to MLX's own op.
bool available();

// Env MLXGP_DISABLE_KERNELS=1 turns every custom kernel off (MLX's ops run instead), for
// before/after measurements.

// Threads used by the custom kernels (default: hardware concurrency, at least 1; env
// MLXGP_NUM_THREADS overrides). Set before the first kernel runs.
void set_num_threads(int n);
int num_threads();

// Which SIMD path the CPU kernels use on this machine: "avx512", "avx2" or "portable".
const char* cpu_isa();
// Caps the SIMD path ("portable", "avx2", "avx512"), e.g. to test the AVX2 path on an AVX-512
// machine. Returns false (and changes nothing) for an unknown name.
bool set_cpu_isa_cap(const std::string& name);

}  // namespace mlxgp::kernels
