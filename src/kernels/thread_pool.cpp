#include "kernels/thread_pool.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace mlxgp::kernels {

namespace {

int default_threads() {
  if (const char* e = std::getenv("MLXGP_NUM_THREADS")) {
    int n = std::atoi(e);
    if (n > 0) return std::min(n, 256);
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

std::atomic<int> g_requested{0};  // 0: default

class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  void run(int n_tasks, const std::function<void(int)>& fn) {
    std::lock_guard<std::mutex> serial(call_m_);
    {
      std::lock_guard<std::mutex> l(m_);
      fn_.store(&fn);
      n_tasks_.store(n_tasks);
      next_.store(0);
      error_ = nullptr;
      closed_.store(false);
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    drain(fn, n_tasks);
    // Workers are helpers, not required: once every task is taken the job is closed, and we only
    // wait for workers already inside it. A worker descheduled by a busy machine therefore never
    // stalls the caller unless it holds a task.
    closed_.store(true);
    while (active_.load() != 0) std::this_thread::yield();
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void drain(const std::function<void(int)>& fn, int n_tasks) {
    for (int t; (t = next_.fetch_add(1)) < n_tasks;) {
      try {
        fn(t);
      } catch (...) {
        std::lock_guard<std::mutex> l(err_m_);
        if (!error_) error_ = std::current_exception();
      }
    }
  }

  void work() {
    unsigned seen = 0;
    for (;;) {
      // Spin a little: the next kernel call usually follows within microseconds.
      auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
      while (generation_.load() == seen && std::chrono::steady_clock::now() < until) std::this_thread::yield();
      if (generation_.load() == seen) {
        std::unique_lock<std::mutex> l(m_);
        cv_.wait(l, [&] { return stop_ || generation_.load() != seen; });
        if (stop_) return;
      }
      seen = generation_.load();
      // Register first, then check the job is still open (all seq_cst): either the caller sees
      // us in active_ and waits, or we see closed_ and leave without touching its function.
      active_.fetch_add(1);
      if (!closed_.load()) drain(*fn_.load(), n_tasks_.load());
      active_.fetch_sub(1);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex m_, call_m_, err_m_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<unsigned> generation_{0};
  std::atomic<int> next_{0}, active_{0}, n_tasks_{0};
  std::atomic<bool> closed_{true};
  std::atomic<const std::function<void(int)>*> fn_{nullptr};
  std::exception_ptr error_;
};

Pool& pool() {
  // Leaked on purpose: MLX's stream threads may still run kernels during static destruction.
  static Pool* p = new Pool(g_requested.load() > 0 ? g_requested.load() : default_threads());
  return *p;
}

}  // namespace

void parallel_for(int n_tasks, const std::function<void(int)>& fn) {
  if (n_tasks <= 0) return;
  if (n_tasks == 1 || pool_threads() == 1) {
    for (int t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
  pool().run(n_tasks, fn);
}

namespace {

// Rows [front, back) of one lane, packed in one word so that its owner (taking from the front) and a
// thief (taking from the back) claim pieces with one compare-exchange each.
struct alignas(64) Lane {
  std::atomic<uint64_t> range{0};
  static uint64_t pack(int front, int back) { return static_cast<uint64_t>(front) << 32 | static_cast<uint32_t>(back); }
  // Claims up to `piece` rows at the front (owner) or the back (thief) into [r0, r1); false once empty.
  bool take(int piece, bool from_front, int& r0, int& r1) {
    uint64_t cur = range.load(std::memory_order_relaxed);
    for (;;) {
      const int front = static_cast<int>(cur >> 32), back = static_cast<int>(static_cast<uint32_t>(cur));
      if (front >= back) return false;
      const int n = std::min(piece, back - front);
      r0 = from_front ? front : back - n;
      r1 = r0 + n;
      const uint64_t next = from_front ? pack(front + n, back) : pack(front, back - n);
      if (range.compare_exchange_weak(cur, next, std::memory_order_acq_rel, std::memory_order_relaxed)) return true;
    }
  }
};

}  // namespace

void parallel_rows(int rows, int inner, const std::function<void(int, int)>& fn) {
  if (rows <= 0) return;
  const int64_t work = static_cast<int64_t>(rows) * std::max(inner, 1);
  const int threads = pool_threads();
  // Pieces of at least ~64K multiply-adds, at most 32 a thread (each claim is an atomic exchange).
  const int pieces = static_cast<int>(std::clamp<int64_t>(std::min<int64_t>(work / (1 << 16), 32 * threads), 1, rows));
  const int lanes = std::min(threads, pieces);
  if (lanes <= 1) return fn(0, rows);
  // One contiguous lane per thread, claimed piece by piece from its front, so each thread streams its
  // weights as one run (the prefetch ahead and the hardware prefetcher carry on across pieces; scattered
  // chunks restarted both at each chunk: 16 chunks a product made a SmolLM2 Q8_0 decode step's products
  // about 6% slower than two halves). A thread whose lane is done takes pieces from the back of the
  // others', so a descheduled thread stalls the call by at most the piece it holds.
  const int piece = (rows + pieces - 1) / pieces;
  std::array<Lane, 16> few;  // no allocation in a decode step's hundred-odd calls
  std::vector<Lane> many(lanes > static_cast<int>(few.size()) ? lanes : 0);
  Lane* lane = many.empty() ? few.data() : many.data();
  for (int i = 0; i < lanes; ++i)
    lane[i].range.store(Lane::pack(static_cast<int>(static_cast<int64_t>(rows) * i / lanes),
                                   static_cast<int>(static_cast<int64_t>(rows) * (i + 1) / lanes)));
  parallel_for(lanes, [&](int own) {
    int r0, r1;
    while (lane[own].take(piece, true, r0, r1)) fn(r0, r1);
    for (int k = 1; k < lanes; ++k)
      while (lane[(own + k) % lanes].take(piece, false, r0, r1)) fn(r0, r1);
  });
}

int pool_threads() { return pool().threads(); }

void set_pool_threads(int n) { g_requested.store(std::max(1, n)); }

}  // namespace mlxgp::kernels
