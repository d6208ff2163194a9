// A tiny persistent thread pool for the CPU kernels. Kernel calls are short (tens of microseconds
// to a few milliseconds), so workers spin briefly before sleeping to keep the wake-up cost low.
#pragma once

#include <functional>

namespace mlxgp::kernels {

// Runs fn(task) for task in [0, n_tasks) on the pool plus the calling thread, and returns when all
// tasks are done. Tasks are handed out dynamically. Calls from several threads at once are
// serialised. An exception thrown by fn is rethrown on the caller (the first one wins).
void parallel_for(int n_tasks, const std::function<void(int)>& fn);

// Splits output rows [0, rows) of a matrix-vector style kernel with `inner` multiply-adds per row
// into pieces of at least ~64K multiply-adds (so small layers stay on one thread, where waking
// workers would cost more than the work) and calls fn(row_begin, row_end) for each. Each thread
// takes the pieces of one contiguous lane of rows in order, then helps with the others' last pieces.
void parallel_rows(int rows, int inner, const std::function<void(int, int)>& fn);

// Total threads used by parallel_for (pool workers + caller).
int pool_threads();
// Takes effect only before the pool's first use (it is created once; MLXGP_NUM_THREADS sets the
// same from the environment).
void set_pool_threads(int n);

}  // namespace mlxgp::kernels
