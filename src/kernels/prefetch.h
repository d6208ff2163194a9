// Asking for weights ahead of a kernel that reads them as one stream.
#pragma once

#include <cstddef>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace mlxgp::kernels {

// A kernel that multiplies several activation rows per weight load computes long enough between loads
// that the hardware prefetcher leaves DRAM idle between its bursts, so time goes to the sum of the
// arithmetic and the transfer instead of the larger of the two. Asking for the lines this far ahead into
// L2 keeps DRAM busy. Measured on a 2-core Zen 4: float32 49152 x 576 weights, 4 rows 5.8 -> 4.2 ms and 8
// rows 8.1 -> 5.3 ms; the default GGUF with --int8-activations at batch 8, 335 -> 371 tok/s; the Q4_K_M file
// (mostly Q5_0) at batch 1, 229 -> 247 tok/s. There one row streamed at the bandwidth without asking; on a
// 2-core Xeon it did not (the default GGUF's float batch-1 decode 77-85 -> 148-153 tok/s), so the row
// kernels ask at every batch size.
inline constexpr size_t kPrefetchAhead = 16384;

// The cache lines of [p, p + Bytes), kPrefetchAhead bytes on. A prefetch never faults, so addresses past
// the end of the weights are harmless.
template <size_t Bytes>
inline void prefetch_ahead(const void* p) {
#if defined(__x86_64__)
  const char* c = static_cast<const char*>(p) + kPrefetchAhead;
  for (size_t o = 0; o < Bytes; o += 64) _mm_prefetch(c + o, _MM_HINT_T1);
#else
  (void)p;
#endif
}

}  // namespace mlxgp::kernels
