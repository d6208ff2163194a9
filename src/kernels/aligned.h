// 64-byte aligned buffers for the SIMD kernels. MLX's CPU allocator hands out data 8 bytes past a
// malloc'd header, so every 64-byte load of an activation row straddles two cache lines; on the
// 2-core Zen 4 machine that halves the load rate of the multi-row kernels (8 rows x 576 x 1536 Q4:
// 27 -> 38 GMAC/s once x is aligned). Activations are small next to the weights, so copying them
// into an aligned buffer is cheap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

namespace mlxgp::kernels {

inline constexpr size_t kSimdAlign = 64;

template <class T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{kSimdAlign})); }
  void deallocate(T* p, size_t) noexcept { ::operator delete(p, std::align_val_t{kSimdAlign}); }
  template <class U>
  bool operator==(const AlignedAllocator<U>&) const noexcept {
    return true;
  }
};

template <class T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

inline bool is_simd_aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kSimdAlign == 0; }

// `p` itself when it is aligned, else a copy of its n floats in `buf`.
inline const float* aligned_copy(const float* p, size_t n, AlignedVector<float>& buf) {
  if (is_simd_aligned(p)) return p;
  buf.resize(n);
  std::memcpy(buf.data(), p, n * sizeof(float));
  return buf.data();
}

}  // namespace mlxgp::kernels
