// Positions of a KV cache buffer moved in place on the CPU (position_moves.cpp): the batch caches' rows
// that leave, join or lose shared padding move within the buffer the batch already holds, instead of
// gathering or concatenating the whole cache into new memory (a full copy plus its page faults each time).
#pragma once

#include <vector>

#include <mlx/array.h>

namespace mlxgp::kernels {

namespace mx = mlx::core;

// Row src_row's positions [src_pos, src_pos + count) go to row dst_row's [dst_pos, dst_pos + count), in
// every head. src_row -1: those positions of dst_row become zeros.
struct PositionMove {
  int src_row = 0, dst_row = 0, src_pos = 0, dst_pos = 0, count = 0;
};

// A CPU buffer of this shape whose contents are undefined until written: MLX's allocator, whose large
// blocks are fresh pages mapped in on first write, so rows a batch reserves cost nothing until they are
// used (mx::zeros writes every byte at once).
mx::array unwritten(const mx::Shape& shape, mx::Dtype dtype);

// Whether move_positions runs for this buffer: a CPU array on the default CPU device.
bool position_moves_supported(const mx::array& buffer);

// `buffer` [rows, heads, capacity, ...] (row-contiguous, any dtype) with `moves` applied in their order,
// each one a memmove. The caller orders them so that no move reads what an earlier one wrote (rows
// compacted towards the front in ascending destination order; a row shifted within itself), so the
// result is also every move reading the buffer as it was. In place when nothing else holds the buffer
// (MLX's donation rule, as slice_update's), else into a copy. Throws std::invalid_argument on a move out of
// range.
mx::array move_positions(const mx::array& buffer, std::vector<PositionMove> moves);

}  // namespace mlxgp::kernels
