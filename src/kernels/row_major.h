// Row-major views of MLX arrays for the CPU kernels, copying only when MLX hands us a strided or
// broadcast view.
#pragma once

#include <cstdint>
#include <vector>

#include <mlx/mlx.h>

namespace mlxgp::kernels {

namespace mx = mlx::core;

// Copies a possibly strided / broadcast array into a row-major buffer (rare: our callers pass
// contiguous arrays, but MLX may hand us views).
template <typename T>
inline void gather_row_major(const mx::array& a, T* dst) {
  const T* src = a.data<T>();
  const int nd = static_cast<int>(a.ndim());
  std::vector<int> idx(nd, 0);
  for (size_t i = 0, n = a.size(); i < n; ++i) {
    int64_t off = 0;
    for (int d = 0; d < nd; ++d) off += static_cast<int64_t>(idx[d]) * a.strides()[d];
    dst[i] = src[off];
    for (int d = nd - 1; d >= 0; --d) {
      if (++idx[d] < a.shape(d)) break;
      idx[d] = 0;
    }
  }
}

// Holds either the array's own data (row-contiguous) or a row-major copy of it.
template <typename T>
struct RowMajor {
  std::vector<T> copy;
  const T* ptr = nullptr;
  explicit RowMajor(const mx::array& a) {
    if (a.flags().row_contiguous) {
      ptr = a.data<T>();
    } else {
      copy.resize(a.size());
      gather_row_major(a, copy.data());
      ptr = copy.data();
    }
  }
};

}  // namespace mlxgp::kernels
