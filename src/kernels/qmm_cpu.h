// Row kernels for MLX's affine quantized layout (w [N, K*bits/32] uint32, each row one little-endian
// bit stream with element k at bit k*bits, so 5-bit codes may straddle words; scales/biases [N, K/group]):
// out[m, n] = sum_k x[m, k] * (scale[n, k/g] * q[n, k] + bias[n, k/g]); and for its microscaling modes
// (mxfp4, mxfp8, nvfp4: uint8 e8m0 / e4m3 scales, no biases) the same with q the e2m1 / e4m3 value of each
// code (fp_formats.h).
#pragma once

#include <cstdint>

namespace mlxgp::kernels {

// f32 / f16 / bf16: affine (integer codes, scales and biases); e8m0 / e4m3: the microscaling modes (uint8
// scales, no biases): e8m0 with 4-bit e2m1 codes (mxfp4) or 8-bit e4m3 codes (mxfp8), e4m3 with e2m1 (nvfp4).
enum class ScaleType { f32, f16, bf16, e8m0, e4m3 };
constexpr bool microscaling(ScaleType t) { return t == ScaleType::e8m0 || t == ScaleType::e4m3; }

struct QmmArgs {
  const float* x = nullptr;  // [M, K], row-major
  const uint32_t* w = nullptr;
  const void* scales = nullptr;
  const void* biases = nullptr;  // null for the microscaling modes
  ScaleType scale_type = ScaleType::f32;
  float* out = nullptr;  // [M, N]
  int M = 0, N = 0, K = 0, group_size = 0, bits = 0;
};

enum class Isa { portable = 0, avx2 = 1, avx512 = 2 };
Isa machine_isa();  // best the CPU supports
Isa detect_isa();   // what the kernels use: machine_isa(), capped by cap_isa()
void cap_isa(Isa isa);
bool kernels_disabled();  // env MLXGP_DISABLE_KERNELS set: callers use MLX ops instead

// Computes out[:, n0:n1] with the given ISA. `xp` is x re-laid out by prepare_x for that ISA.
void qmm_rows(const QmmArgs& a, const float* xp, int n0, int n1, Isa isa);

// Rows [n0, n1) of the weight dequantized to float32 in natural order: out[n * K + k] =
// scale * q + bias (a.x, a.M and a.out are not used). AVX-512 only.
void dequantize_rows(const QmmArgs& a, float* out, int n0, int n1, Isa isa);

// Size (floats) and fill of the per-ISA activation layout qmm_rows reads: 4-bit kernels take the
// even and odd elements of each SIMD block apart, because that is how two nibbles of a byte unpack.
int prepared_x_floats(const QmmArgs& a);
void prepare_x(const QmmArgs& a, Isa isa, float* xp);

}  // namespace mlxgp::kernels
