// Row blocking shared by the SIMD kernels: activation rows go in blocks of up to 4 (8), the remainder in
// a narrower instantiation, so each kernel body sees its block height as a compile-time constant.
#pragma once

#include <cstddef>
#include <type_traits>

namespace mlxgp::kernels {

// Calls fn(m0, std::integral_constant<int, MB>{}) for each block [m0, m0 + MB) of [0, M): blocks of
// MaxMB (4, or 8 where a kernel has the registers for 8 rows), the remainder in narrower ones.
template <int MaxMB = 4, class Fn>
inline void for_row_blocks(int M, Fn&& fn) {
  static_assert(MaxMB == 4 || MaxMB == 8);
  for (int m0 = 0; m0 < M;) {
    const int left = M - m0;
    if (MaxMB == 8 && left >= 8) {
      fn(m0, std::integral_constant<int, (MaxMB == 8 ? 8 : 4)>{});
      m0 += 8;
      continue;
    }
    const int mb = left >= 4 ? 4 : left;
    switch (mb) {
      case 4:
        fn(m0, std::integral_constant<int, 4>{});
        break;
      case 3:
        fn(m0, std::integral_constant<int, 3>{});
        break;
      case 2:
        fn(m0, std::integral_constant<int, 2>{});
        break;
      default:
        fn(m0, std::integral_constant<int, 1>{});
        break;
    }
    m0 += mb;
  }
}

// Calls fn(m0, MB, t0, t1) for output rows [n0, n1) in tiles of about `tile_bytes` of weights, every
// activation row block over a tile before the next tile: a batch of more than 4 rows then reads each
// weight row from memory once (it stays in L1 for the other blocks) instead of once per block. Tiles
// hold an even number of rows (kernels may take two weight rows per pass).
template <int MaxMB = 4, class Fn>
inline void for_weight_tiles(int M, int n0, int n1, size_t row_bytes, size_t tile_bytes, Fn&& fn) {
  if (M <= MaxMB) {
    for_row_blocks<MaxMB>(M, [&](int m0, auto mb) { fn(m0, mb, n0, n1); });
    return;
  }
  int tile = static_cast<int>(tile_bytes / (row_bytes ? row_bytes : 1));
  tile = tile < 2 ? 2 : tile & ~1;
  for (int t0 = n0; t0 < n1; t0 += tile) {
    const int t1 = t0 + tile < n1 ? t0 + tile : n1;
    for_row_blocks<MaxMB>(M, [&](int m0, auto mb) { fn(m0, mb, t0, t1); });
  }
}

}  // namespace mlxgp::kernels
