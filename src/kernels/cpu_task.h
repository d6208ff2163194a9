// How our custom primitives run on the CPU stream, as MLX's own CPU primitives do.
#pragma once

#include <utility>
#include <vector>

#include <mlx/allocator.h>
#include <mlx/array.h>
#include <mlx/backend/cpu/encoder.h>

#include "kernels/sanitizers.h"
#if MLXGP_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace mlxgp::kernels {

#if MLXGP_TSAN
inline char tsan_dispatch_sync;  // the address ThreadSanitizer's release/acquire pair on
#endif

// Enqueues the task that make_work() returns on the stream's CPU command encoder, for outputs whose
// buffers are already set: it runs in order after the tasks that produce its inputs, never inline in eval_cpu.
template <class MakeWork>
void dispatch_cpu(mlx::core::Stream stream, MakeWork&& make_work) {
  auto& enc = mlx::core::cpu::get_command_encoder(stream);
#if MLXGP_TSAN
  // libmlx (not instrumented) hands the task to its stream thread through a queue ThreadSanitizer cannot
  // see, so say what that hand-off guarantees: everything before the dispatch happens before the task.
  __tsan_release(&tsan_dispatch_sync);
  enc.dispatch([work = make_work()]() mutable {
    __tsan_acquire(&tsan_dispatch_sync);
    work();
  });
#else
  enc.dispatch(make_work());
#endif
}

// Allocates `outs`, then dispatch_cpu. make_work is called after the allocation, so weak copies of the
// outputs taken inside it see their buffers.
template <class MakeWork>
void enqueue_cpu(mlx::core::Stream stream, const std::vector<mlx::core::array>&, std::vector<mlx::core::array>& outs,
                 MakeWork&& make_work) {
  for (auto& o : outs) o.set_data(mlx::core::allocator::malloc(o.nbytes()));
  dispatch_cpu(stream, std::forward<MakeWork>(make_work));
}

// Weak copies of a node's arrays for its task: the task must not keep the buffers alive (MLX's own CPU
// primitives capture their arrays this way).
inline std::vector<mlx::core::array> weak_copies(const std::vector<mlx::core::array>& arrays) {
  std::vector<mlx::core::array> out;
  out.reserve(arrays.size());
  for (const auto& a : arrays) out.push_back(mlx::core::array::unsafe_weak_copy(a));
  return out;
}

// The single-output form (UnaryPrimitive::eval_cpu).
template <class MakeWork>
void enqueue_cpu(mlx::core::Stream stream, const std::vector<mlx::core::array>& inputs, mlx::core::array& out,
                 MakeWork&& make_work) {
  std::vector<mlx::core::array> outs{out};
  enqueue_cpu(stream, inputs, outs, std::forward<MakeWork>(make_work));
}

}  // namespace mlxgp::kernels
