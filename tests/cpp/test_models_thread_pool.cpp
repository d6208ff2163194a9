// The kernels' thread pool (src/kernels/thread_pool.h): every task runs exactly once, from one caller
// or several at once, and a task's exception reaches its caller without breaking the pool. Built with
// the rest under `make test-asan` (and meant for a TSan build: the pool is hand-rolled synchronisation).
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/thread_pool.h"

namespace mlxgp::kernels {
namespace {

TEST(ThreadPool, EveryTaskRunsExactlyOnce) {
  for (int n : {1, 2, 3, 7, 64, 1000}) {
    std::vector<std::atomic<int>> hits(n);
    parallel_for(n, [&](int t) { hits[t].fetch_add(1); });
    for (int t = 0; t < n; ++t) ASSERT_EQ(hits[t].load(), 1) << "task " << t << " of " << n;
  }
  parallel_for(0, [](int) { FAIL() << "no task to run"; });
}

TEST(ThreadPool, ConcurrentCallersAreServedCorrectly) {
  // The pool serialises callers: four threads, each with its own jobs and counters.
  constexpr int kCallers = 4, kJobs = 150, kTasks = 37;
  std::vector<std::thread> callers;
  std::vector<int> wrong(kCallers, 0);
  for (int c = 0; c < kCallers; ++c)
    callers.emplace_back([&, c] {
      for (int j = 0; j < kJobs; ++j) {
        std::vector<std::atomic<int>> hits(kTasks);
        parallel_for(kTasks, [&](int t) { hits[t].fetch_add(1 + c); });
        for (auto& h : hits) wrong[c] += h.load() != 1 + c;
      }
    });
  for (auto& t : callers) t.join();
  for (int c = 0; c < kCallers; ++c) EXPECT_EQ(wrong[c], 0) << "caller " << c;
}

TEST(ThreadPool, ATasksExceptionReachesTheCallerAndThePoolGoesOn) {
  std::atomic<int> ran{0};
  EXPECT_THROW(parallel_for(100,
                            [&](int t) {
                              ran.fetch_add(1);
                              if (t == 42) throw std::runtime_error("task 42");
                            }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 100);  // the other tasks still ran
  std::atomic<int> after{0};
  parallel_for(50, [&](int) { after.fetch_add(1); });
  EXPECT_EQ(after.load(), 50);
}

TEST(ThreadPool, RowsAreCoveredOnceInContiguousChunks) {
  for (auto [rows, inner] : std::vector<std::pair<int, int>>{{1, 1}, {7, 1 << 20}, {1000, 4096}, {49152, 576}}) {
    std::vector<std::atomic<int>> hits(rows);
    parallel_rows(rows, inner, [&](int begin, int end) {
      ASSERT_LT(begin, end);
      for (int r = begin; r < end; ++r) hits[r].fetch_add(1);
    });
    for (int r = 0; r < rows; ++r) ASSERT_EQ(hits[r].load(), 1) << "row " << r << " of " << rows;
  }
}

}  // namespace
}  // namespace mlxgp::kernels
