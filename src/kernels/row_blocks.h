// Row blocking shared by the SIMD kernels: activation rows go in blocks of up to 4, the remainder in a
// narrower instantiation, so each kernel body sees its block height as a compile-time constant.
#pragma once

#include <type_traits>

namespace mlxgp::kernels {

// Calls fn(m0, std::integral_constant<int, MB>{}) for each block [m0, m0 + MB) of [0, M).
template <class Fn>
inline void for_row_blocks(int M, Fn&& fn) {
  for (int m0 = 0; m0 < M;) {
    const int mb = M - m0 >= 4 ? 4 : M - m0;
    switch (mb) {
      case 4: fn(m0, std::integral_constant<int, 4>{}); break;
      case 3: fn(m0, std::integral_constant<int, 3>{}); break;
      case 2: fn(m0, std::integral_constant<int, 2>{}); break;
      default: fn(m0, std::integral_constant<int, 1>{}); break;
    }
    m0 += mb;
  }
}

}  // namespace mlxgp::kernels
