// The kernels' thread pool (src/kernels/thread_pool.h): every task runs exactly once, from one caller
// or several at once, and a task's exception reaches its caller without breaking the pool. Built with
// the rest under `make test-asan` (and meant for a TSan build: the pool is hand-rolled synchronisation).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
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

TEST(ThreadPool, RowsAreCoveredOnceWhenOneThreadStalls) {
  // A thread that stalls in a piece (descheduled, say) leaves the rest of its lane to the others, which
  // take it from the back: every row still runs once, from one caller or several at once.
  auto check = [](int rows, int stall_row) {
    std::vector<std::atomic<int>> hits(rows);
    parallel_rows(rows, 1 << 16, [&](int begin, int end) {
      if (begin <= stall_row && stall_row < end) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      for (int r = begin; r < end; ++r) hits[r].fetch_add(1);
    });
    int wrong = 0;
    for (auto& h : hits) wrong += h.load() != 1;
    return wrong;
  };
  EXPECT_EQ(check(500, 0), 0);
  EXPECT_EQ(check(500, 260), 0);
  std::vector<std::thread> callers;
  std::vector<int> wrong(3, 0);
  for (int c = 0; c < 3; ++c)
    callers.emplace_back([&, c] {
      for (int j = 0; j < 20; ++j) wrong[c] += check(97 + 301 * c, (j * 37) % (97 + 301 * c));
    });
  for (auto& t : callers) t.join();
  for (int c = 0; c < 3; ++c) EXPECT_EQ(wrong[c], 0) << "caller " << c;
}

}  // namespace
}  // namespace mlxgp::kernels
