// Row dequantizers for llama.cpp's block formats, ported from ggml-quants.c (dequantize_row_q4_0 ...
// dequantize_row_q6_K, dequantize_row_iq4_nl / _iq4_xs) with its fp32 arithmetic and evaluation order, so a dequantized
// weight is the value llama.cpp's (and gguf-py's) reference dequantization produces.
#include "kernels/ggml_blocks.h"

#include <cstring>

#include "kernels/sanitizers.h"

namespace mlxgp::kernels {

namespace {

// Inlined into each target clone of dequantize_ggml_row, so they are compiled for its ISA.
#define BLOCK_FN [[gnu::always_inline]] inline

uint16_t u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

float f16(const uint8_t* p) { return half_to_float(u16(p)); }

BLOCK_FN void q4_0(const uint8_t* b, float* y) {  // half d; qs[16]
  const float d = f16(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = ((b[2 + j] & 0x0F) - 8) * d;
    y[j + 16] = ((b[2 + j] >> 4) - 8) * d;
  }
}

BLOCK_FN void q4_1(const uint8_t* b, float* y) {  // half d, m; qs[16]
  const float d = f16(b), m = f16(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = (b[4 + j] & 0x0F) * d + m;
    y[j + 16] = (b[4 + j] >> 4) * d + m;
  }
}

// Q5_0 / Q5_1: the fifth bit of element j is bit j of qh (little-endian uint32).
BLOCK_FN void q5(const uint8_t* b, float* y, bool has_min) {
  const float d = f16(b), m = has_min ? f16(b + 2) : 0.0f;
  const uint8_t* p = b + (has_min ? 4 : 2);
  uint32_t qh;
  std::memcpy(&qh, p, 4);
  const uint8_t* qs = p + 4;
  for (int j = 0; j < 16; ++j) {
    const int x0 = (qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
    const int x1 = (qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
    if (has_min) {
      y[j] = x0 * d + m;
      y[j + 16] = x1 * d + m;
    } else {
      y[j] = (x0 - 16) * d;
      y[j + 16] = (x1 - 16) * d;
    }
  }
}

BLOCK_FN void q8_0(const uint8_t* b, float* y) {  // half d; int8 qs[32]
  const float d = f16(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<int8_t>(b[2 + j]) * d;
}

BLOCK_FN void q2_k(const uint8_t* b, float* y) {  // scales[16]; qs[64]; half d, dmin
  const uint8_t* sc = b;
  const uint8_t* q = b + 16;
  const float d = f16(b + 80), min = f16(b + 82);
  int is = 0;
  for (int n = 0; n < 256; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int half = 0; half < 2; ++half) {
        const uint8_t s = sc[is++];
        const float dl = d * (s & 0xF), ml = min * (s >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
      }
      shift += 2;
    }
    q += 32;
  }
}

BLOCK_FN void q3_k(const uint8_t* b, float* y) {  // hmask[32]; qs[64]; scales[12]; half d
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  const float d_all = f16(b + 108);
  int8_t scales[16];
  unpack_q3_k_scales(b + 96, scales);
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < 256; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int half = 0; half < 2; ++half) {
        const float dl = d_all * (scales[is++] - 32);
        for (int l = 0; l < 16; ++l) {
          const int i = l + 16 * half;
          *y++ = dl * (((q[i] >> shift) & 3) - ((hm[i] & m) ? 0 : 4));
        }
      }
      shift += 2;
      m <<= 1;
    }
    q += 32;
  }
}

// Q4_K (half d, dmin; scales[12]; qs[128]) and Q5_K (the same plus qh[32] before qs).
BLOCK_FN void q45_k(const uint8_t* b, float* y, bool five) {
  const float d = f16(b), min = f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = five ? b + 48 : b + 16;
  int is = 0;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < 256; j += 64) {
    uint8_t sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * sc, m1 = min * m;
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * sc, m2 = min * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2;
    ql += 32;
    is += 2;
    u1 <<= 2;
    u2 <<= 2;
  }
}

BLOCK_FN void q6_k(const uint8_t* b, float* y) {  // ql[128]; qh[64]; int8 scales[16]; half d
  const float d = f16(b + 208);
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  for (int n = 0; n < 256; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// IQ4_NL: half d; qs[16] laid out as Q4_0's, each code an index into kIq4NlValues.
BLOCK_FN void iq4_nl(const uint8_t* b, float* y) {
  const float d = f16(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * kIq4NlValues[b[2 + j] & 0x0F];
    y[j + 16] = d * kIq4NlValues[b[2 + j] >> 4];
  }
}

// IQ4_XS: half d; uint16 scales_h; scales_l[4]; qs[128]: eight IQ4_NL-like sub-blocks of 32, each with
// the scale d * (6-bit scale - 32) (iq4_xs_scale).
BLOCK_FN void iq4_xs(const uint8_t* b, float* y) {
  const float d = f16(b);
  const uint8_t* qs = b + 8;
  for (int ib = 0; ib < 8; ++ib, qs += 16, y += 32) {
    const float dl = d * static_cast<float>(iq4_xs_scale(b, ib) - 32);
    for (int j = 0; j < 16; ++j) {
      y[j] = dl * kIq4NlValues[qs[j] & 0x0F];
      y[j + 16] = dl * kIq4NlValues[qs[j] >> 4];
    }
  }
}

}  // namespace

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000 | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    exp = 113;
    while (!(mant & 0x400)) {
      mant <<= 1;
      --exp;
    }
    bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float half_at(const uint8_t* p) { return f16(p); }

void unpack_q3_k_scales(const uint8_t* packed, int8_t* scales) {
  // ggml-quants.c's kmask1/kmask2 unpacking: scale j's low 4 bits are nibble j of the first 8 bytes,
  // its top 2 bits a 2-bit field of the last 4.
  uint32_t aux[4];
  std::memcpy(aux, packed, 12);
  const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f, tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  std::memcpy(scales, aux, 16);
}

void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

GgmlBlock ggml_block(uint32_t type) {
  switch (type) {
    case kGgmlF32:
      return {1, 4};
    case kGgmlF16:
      return {1, 2};
    case kGgmlBF16:
      return {1, 2};
    case kGgmlQ4_0:
      return {32, 18};
    case kGgmlQ4_1:
      return {32, 20};
    case kGgmlQ5_0:
      return {32, 22};
    case kGgmlQ5_1:
      return {32, 24};
    case kGgmlQ8_0:
      return {32, 34};
    case kGgmlQ2_K:
      return {256, 84};
    case kGgmlQ3_K:
      return {256, 110};
    case kGgmlQ4_K:
      return {256, 144};
    case kGgmlQ5_K:
      return {256, 176};
    case kGgmlQ6_K:
      return {256, 210};
    case kGgmlIQ4_NL:
      return {32, 18};
    case kGgmlIQ4_XS:
      return {256, 136};
    default:
      return {};
  }
}

// Built for AVX-512 / AVX2 as well as the baseline (picked at load time): the loops above vectorise
// there, which matters because ggml_matmul dequantizes every weight row on every decode step. Not under
// ThreadSanitizer: it instruments the clones' ifunc resolver, which the dynamic loader runs before the
// TSan runtime is up (a crash at start-up).
#if defined(__x86_64__) && defined(__GNUC__) && !MLXGP_TSAN
__attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#endif
void dequantize_ggml_row(uint32_t type, const uint8_t* src, float* dst, int64_t k) {
  const GgmlBlock blk = ggml_block(type);
  for (int64_t i = 0; i < k; i += blk.elements, src += blk.bytes) {
    float* y = dst + i;
    switch (type) {
      case kGgmlF32:
        std::memcpy(y, src, 4);
        break;
      case kGgmlF16:
        *y = f16(src);
        break;
      case kGgmlBF16: {
        const uint32_t u = static_cast<uint32_t>(u16(src)) << 16;
        std::memcpy(y, &u, 4);
        break;
      }
      case kGgmlQ4_0:
        q4_0(src, y);
        break;
      case kGgmlQ4_1:
        q4_1(src, y);
        break;
      case kGgmlQ5_0:
        q5(src, y, false);
        break;
      case kGgmlQ5_1:
        q5(src, y, true);
        break;
      case kGgmlQ8_0:
        q8_0(src, y);
        break;
      case kGgmlQ2_K:
        q2_k(src, y);
        break;
      case kGgmlQ3_K:
        q3_k(src, y);
        break;
      case kGgmlQ4_K:
        q45_k(src, y, false);
        break;
      case kGgmlQ5_K:
        q45_k(src, y, true);
        break;
      case kGgmlQ6_K:
        q6_k(src, y);
        break;
      case kGgmlIQ4_NL:
        iq4_nl(src, y);
        break;
      case kGgmlIQ4_XS:
        iq4_xs(src, y);
        break;
      default:
        return;
    }
  }
}

}  // namespace mlxgp::kernels
