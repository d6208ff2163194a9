// A quantized KV cache's rows on the CPU. Dequantizing for attention: the keys and values of one (batch
// row, KV head) become floats a tile at a time in a buffer that stays in L1, so the float kernels'
// arithmetic runs unchanged while DRAM delivers bits / 32 of a float cache's bytes (plus the scales and
// biases). Quantizing: the fused decode step's new rows, as mx::quantize does.
#include "kernels/quantized_kv_rows.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/simd_exp.h"

namespace mlxgp::kernels {

void quantize_row(const float* x, int D, int group, int bits, uint32_t* data, float* scales, float* biases) {
  // The operations and their order are mlx/backend/cpu/quantized.cpp's quantize(), so each result is
  // the same float (division and rint are exact IEEE operations; nothing here can contract to an FMA).
  const float n_bins = static_cast<float>((1 << bits) - 1);
  const float eps = 1e-7f;
  const int per_word = 32 / bits;
  for (int g = 0; g < D / group; ++g) {
    const float* w = x + g * group;
    float w_min = std::numeric_limits<float>::infinity(), w_max = -w_min;
    for (int j = 0; j < group; ++j) {
      w_max = std::max(w_max, w[j]);
      w_min = std::min(w_min, w[j]);
    }
    const bool mask = std::abs(w_min) > std::abs(w_max);
    float scale = std::max((w_max - w_min) / n_bins, eps);
    scale = mask ? scale : -scale;
    const float edge = mask ? w_min : w_max;
    const float q0 = std::rint(edge / scale);
    float bias = 0;
    if (q0 != 0) {
      scale = edge / q0;
      bias = edge;
    }
    for (int j = 0; j < group / per_word; ++j) {
      uint32_t word = 0;
      for (int k = 0; k < per_word; ++k) {
        float q = std::rint((w[j * per_word + k] - bias) / scale);
        q = std::min(std::max(q, 0.0f), n_bins);
        word |= static_cast<uint32_t>(q) << (k * bits);
      }
      data[(g * group) / per_word + j] = word;
    }
    scales[g] = scale;
    biases[g] = bias;
  }
}

#if defined(__x86_64__)

namespace {

// Elements [e, e + 8) of a row's words as 32-bit integers (e unsigned: its divisions are shifts).
template <int BITS>
MLXGP_SIMD_EXP_AVX2 inline __m256i elements8(const uint32_t* w, unsigned e) {
  if constexpr (BITS == 8) {  // element k of a word is its byte k (little-endian)
    return _mm256_cvtepu8_epi32(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(reinterpret_cast<const uint8_t*>(w) + e)));
  } else if constexpr (BITS == 4) {
    return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(w[e / 8])),
                                              _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                            _mm256_set1_epi32(15));
  } else {
    const uint32_t u = w[e / 16] >> (2 * (e % 16));
    return _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(u)), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
        _mm256_set1_epi32(3));
  }
}

// How far ahead rows are asked for: 2 KB of packed data (32 rows of 64 8-bit elements, 64 of 4-bit ones).
// At a fixed count of 32 rows, 4-bit rows (32 bytes) were asked for too late and stalled more than 8-bit ones.
inline int rows_ahead(const QuantizedRows& q, int D) { return std::max(8, 2048 * 8 / (D * q.bits)); }

inline void prefetch_row(const QuantizedRows& q, const uint32_t* w, const float* s, const float* z, int D) {
  const int bytes = D * q.bits / 8;
  for (int b = 0; b < bytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(w) + b, _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(s), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(z), _MM_HINT_T0);
}

template <int BITS>
MLXGP_SIMD_EXP_AVX2 void dequantize(const QuantizedRows& q, int b, int h, int j0, int j1, int D, float* out,
                                    int ahead_end) {
  const uint32_t* data = q.data + b * q.ds[0] + h * q.ds[1];
  const float* scales = q.scales + b * q.ss[0] + h * q.ss[1];
  const float* biases = q.biases + b * q.bs[0] + h * q.bs[1];
  const int ahead = rows_ahead(q, D);
  for (int j = j0; j < j1; ++j) {
    const uint32_t* w = data + j * q.ds[2];
    const float* s = scales + j * q.ss[2];
    const float* z = biases + j * q.bs[2];
    if (j + ahead < ahead_end) prefetch_row(q, w + ahead * q.ds[2], s + ahead * q.ss[2], z + ahead * q.bs[2], D);
    float* o = out + static_cast<size_t>(j - j0) * D;
    for (unsigned g = 0, e = 0; e < static_cast<unsigned>(D); ++g) {  // groups are multiples of 8 elements
      const __m256 scale = _mm256_set1_ps(s[g]), bias = _mm256_set1_ps(z[g]);
      for (const unsigned end = e + q.group; e < end; e += 8)
        _mm256_storeu_ps(o + e, _mm256_fmadd_ps(_mm256_cvtepi32_ps(elements8<BITS>(w, e)), scale, bias));
    }
  }
}

}  // namespace

void prefetch_quantized_rows(const QuantizedRows& q, int b, int h, int j0, int j1, int D) {
  j1 = std::min(j1, j0 + rows_ahead(q, D));
  for (int j = j0; j < j1; ++j)
    prefetch_row(q, q.data + b * q.ds[0] + h * q.ds[1] + j * q.ds[2],
                 q.scales + b * q.ss[0] + h * q.ss[1] + j * q.ss[2], q.biases + b * q.bs[0] + h * q.bs[1] + j * q.bs[2],
                 D);
}

void dequantize_rows(const QuantizedRows& q, int b, int h, int j0, int j1, int D, float* out, int ahead_end) {
  switch (q.bits) {
    case 8:
      return dequantize<8>(q, b, h, j0, j1, D, out, ahead_end);
    case 4:
      return dequantize<4>(q, b, h, j0, j1, D, out, ahead_end);
    case 2:
      return dequantize<2>(q, b, h, j0, j1, D, out, ahead_end);
    default:
      throw std::logic_error("[kernels] quantized KV rows of " + std::to_string(q.bits) + " bits");
  }
}

#else  // x86-64 only: quantized_decode_attention_supported() is false elsewhere, so this is never reached

void dequantize_rows(const QuantizedRows&, int, int, int, int, int, float*, int) {
  throw std::logic_error("[kernels] quantized KV rows are read on x86-64 only");
}
void prefetch_quantized_rows(const QuantizedRows&, int, int, int, int, int) {}

#endif

}  // namespace mlxgp::kernels
