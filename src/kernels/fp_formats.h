// MLX's microscaling formats (quantize modes mxfp4 / nvfp4: 4-bit e2m1 codes, one uint8 scale per group, e8m0
// for mxfp4 and e4m3 for nvfp4), decoded as mx::dequantize decodes them: test_models_kernels checks every code
// and every scale byte against it (e8m0 0 is 2^-127, 255 is inf; e4m3 0x7F / 0xFF are NaN).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace mlxgp::kernels {

// e2m1 by code: bit 3 the sign, then two exponent bits and one mantissa bit.
inline constexpr float kE2m1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

// 2^(s - 127): the byte is the float's exponent field (0 the subnormal 2^-127).
inline float e8m0_scale(uint8_t s) {
  if (s == 0) return 0x1p-127f;
  const uint32_t u = static_cast<uint32_t>(s) << 23;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// OCP FP8 E4M3 (bias 7, subnormals, no infinities; S.1111.111 is NaN).
inline float e4m3_decode(uint8_t b) {
  const int e = (b >> 3) & 0xF, m = b & 7;
  float v = (b & 0x7F) == 0x7F ? std::numeric_limits<float>::quiet_NaN()
            : e == 0           ? std::ldexp(static_cast<float>(m), -9)
                               : std::ldexp(1.0f + static_cast<float>(m) / 8.0f, e - 7);
  return (b & 0x80) ? -v : v;
}

// Every byte decoded once: the kernels read a scale per 16 weights, where ldexp would cost more than the
// products (nvfp4 decode of the default model 28 -> 90+ tok/s).
struct E4m3Table {
  float v[256];
  E4m3Table() {
    for (int b = 0; b < 256; ++b) v[b] = e4m3_decode(static_cast<uint8_t>(b));
  }
};
inline const E4m3Table kE4m3Table;

inline float e4m3_value(uint8_t b) { return kE4m3Table.v[b]; }

}  // namespace mlxgp::kernels
