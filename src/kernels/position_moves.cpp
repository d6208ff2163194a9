// move_positions: a node whose output takes over its input's buffer (when MLX may donate it) and moves
// positions inside it; otherwise it copies the buffer first. Either way the moves run on the stream's
// thread after every earlier task, so a decode step queued before still reads and writes the old layout.
#include "kernels/position_moves.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "kernels/cpu_task.h"
#include "kernels/thread_pool.h"

namespace mlxgp::kernels {

namespace {

void run(const mx::array& in, mx::array& out, bool donated, const std::vector<PositionMove>& moves) {
  auto* base = static_cast<char*>(out.data<void>());
  if (!donated) std::memcpy(base, in.data<void>(), in.nbytes());
  const int heads = in.shape(1), cap = in.shape(2);
  const size_t pos_bytes = in.nbytes() / (static_cast<size_t>(in.shape(0)) * heads * cap);
  const size_t head_bytes = pos_bytes * cap, row_bytes = head_bytes * heads;
  for (const auto& m : moves) {
    if (m.count <= 0 || (m.src_row == m.dst_row && m.src_pos == m.dst_pos)) continue;
    if (m.src_row < 0) {
      for (int h = 0; h < heads; ++h)
        std::memset(base + m.dst_row * row_bytes + h * head_bytes + m.dst_pos * pos_bytes, 0, m.count * pos_bytes);
      continue;
    }
    // A move's heads are disjoint: they run in parallel (a row of a long cache is megabytes).
    const int bytes = static_cast<int>(std::min<size_t>(m.count * pos_bytes, 1u << 30));
    parallel_rows(heads, bytes, [&](int h0, int h1) {
      for (int h = h0; h < h1; ++h)
        std::memmove(base + m.dst_row * row_bytes + h * head_bytes + m.dst_pos * pos_bytes,
                     base + m.src_row * row_bytes + h * head_bytes + m.src_pos * pos_bytes, m.count * pos_bytes);
    });
  }
}

class CpuPositionMoves : public mx::UnaryPrimitive {
 public:
  CpuPositionMoves(mx::Stream s, std::vector<PositionMove> moves) : mx::UnaryPrimitive(s), moves_(std::move(moves)) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    // The donation test of MLX's own in-place ops (slice_update): no other array holds the buffer.
    const bool donated = in[0].is_donatable() && in[0].flags().row_contiguous;
    if (donated) out.copy_shared_buffer(in[0]);
    else out.set_data(mx::allocator::malloc(out.nbytes()));
    dispatch_cpu(stream(), [&] {
      return [i = mx::array::unsafe_weak_copy(in[0]), o = mx::array::unsafe_weak_copy(out), donated,
              moves = moves_]() mutable { run(i, o, donated, moves); };
    });
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] cache position moves run on the CPU only");
  }
  const char* name() const override { return "MlxgpCpuPositionMoves"; }
  bool is_equivalent(const mx::Primitive&) const override { return false; }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& in) override { return {in[0].shape()}; }

 private:
  std::vector<PositionMove> moves_;
};

// The node behind unwritten(): an output buffer and no work.
class CpuUnwritten : public mx::UnaryPrimitive {
 public:
  explicit CpuUnwritten(mx::Stream s) : mx::UnaryPrimitive(s) {}
  void eval_cpu(const std::vector<mx::array>&, mx::array& out) override {
    out.set_data(mx::allocator::malloc(out.nbytes()));
  }
  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[kernels] unwritten buffers are CPU buffers");
  }
  const char* name() const override { return "MlxgpCpuUnwritten"; }
  bool is_equivalent(const mx::Primitive&) const override { return false; }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>&) override {
    throw std::invalid_argument("[kernels] an unwritten buffer has the shape it was made with");
  }
};

}  // namespace

mx::array unwritten(const mx::Shape& shape, mx::Dtype dtype) {
  return mx::array(shape, dtype, std::make_shared<CpuUnwritten>(mx::default_stream(mx::Device::cpu)), {});
}

bool position_moves_supported(const mx::array& buffer) {
  return mx::default_device() == mx::Device::cpu && buffer.ndim() >= 3;
}

mx::array move_positions(const mx::array& buffer, std::vector<PositionMove> moves) {
  if (buffer.ndim() < 3)
    throw std::invalid_argument("[kernels] position moves need a [rows, heads, positions, ...] buffer");
  const int rows = buffer.shape(0), cap = buffer.shape(2);
  for (const auto& m : moves)
    if (m.count < 0 || m.src_row < -1 || m.src_row >= rows || m.dst_row < 0 || m.dst_row >= rows || m.src_pos < 0 ||
        m.dst_pos < 0 || m.src_pos + m.count > cap || m.dst_pos + m.count > cap)
      throw std::invalid_argument("[kernels] a cache position move is out of range (" + std::to_string(rows) +
                                  " rows, " + std::to_string(cap) + " positions)");
  // A row-contiguous input (the task reads it as one block): a view becomes its own copy first.
  auto in = mx::contiguous(buffer);
  return mx::array(in.shape(), in.dtype(),
                   std::make_shared<CpuPositionMoves>(mx::default_stream(mx::Device::cpu), std::move(moves)), {in});
}

}  // namespace mlxgp::kernels
