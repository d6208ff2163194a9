// Joining the launcher's process group, with a bounded wait (MLX's ring backend otherwise waits for
// ever for a rank that never starts), and checking at start that every rank runs the same thing.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <dlfcn.h>
#include <fstream>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "kernels/thread_pool.h"
#include "mlxgp/distributed.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;
namespace dist = mlx::core::distributed;

namespace mlxgp {

namespace {

bool has_env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v;
}

std::string rank_hint() {
  for (const char* name : {"MLX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"})
    if (const char* v = std::getenv(name); v && *v) return std::string("rank ") + v;
  return "this rank";
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

// mlx.launch's ring hostfile: one list of "host:port" per rank. The ranks on this rank's host.
int ranks_on_this_host(int rank) {
  const char* path = std::getenv("MLX_HOSTFILE");
  if (!path || !*path) return 1;
  try {
    std::ifstream in(path);
    auto hosts = nlohmann::json::parse(in);
    auto host_of = [&](int r) {
      auto addr = hosts.at(r).at(0).get<std::string>();
      return addr.substr(0, addr.rfind(':'));
    };
    const auto mine = host_of(rank);
    int n = 0;
    for (int r = 0; r < static_cast<int>(hosts.size()); ++r) n += host_of(r) == mine;
    return std::max(n, 1);
  } catch (const std::exception&) {
    return 1;  // another backend's file: leave the threads alone
  }
}

// Ranks sharing a machine share its cores: unless the user chose (MLXGP_NUM_THREADS,
// OPENBLAS_NUM_THREADS), each rank's kernels and OpenBLAS take an equal share instead of all of them.
void share_cores(int local_ranks) {
  if (local_ranks <= 1) return;
  const int threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local_ranks);
  if (!has_env("MLXGP_NUM_THREADS")) kernels::set_pool_threads(threads);
  if (!has_env("OPENBLAS_NUM_THREADS"))
    if (auto* set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(threads);
}

// `mlx.launch -n 1` writes a ring hostfile with no hosts (MLX's ring backend then fails to parse it), and a
// hostfile of one host is a group of one too.
bool one_rank_ring_hostfile() {
  if (!has_env("MLX_RANK") || !has_env("MLX_HOSTFILE") || has_env("MLX_JACCL_COORDINATOR")) return false;
  std::ifstream in(std::getenv("MLX_HOSTFILE"));
  if (!in) return false;  // MLX names the missing file
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) return true;
  try {
    const auto hosts = nlohmann::json::parse(text);
    return hosts.is_array() && hosts.size() <= 1;
  } catch (const std::exception&) {
    return false;  // MLX reports what is wrong with it
  }
}

}  // namespace

double distributed_timeout() {
  const char* v = std::getenv("MLXGP_DISTRIBUTED_TIMEOUT");
  if (!v || !*v) return 60.0;
  char* end = nullptr;
  const double t = std::strtod(v, &end);
  if (end == v || *end || !(t > 0) || t > 86400)
    fail("distributed",
         "MLXGP_DISTRIBUTED_TIMEOUT must be a number of seconds in (0, 86400], got '" + std::string(v) + "'");
  return t;
}

bool distributed_launched() {
  return (has_env("MLX_RANK") && (has_env("MLX_HOSTFILE") || has_env("MLX_JACCL_COORDINATOR"))) ||
         has_env("OMPI_COMM_WORLD_SIZE") || has_env("PMI_SIZE");
}

DistGroup distributed_init(double timeout_s) {
  // No launcher, or a launch of one rank: MLX's singleton group, on which every collective is a no-op.
  if (one_rank_ring_hostfile()) {
    // MLX would still read the file; without the variables it makes its group of one.
    unsetenv("MLX_HOSTFILE");
    unsetenv("MLX_RANK");
  }
  if (!distributed_launched()) return dist::init(false);
  if (timeout_s < 0) timeout_s = distributed_timeout();
  // init() blocks until every rank has connected; it runs on its own thread so the wait can be bounded.
  // On a timeout that thread is left blocked in connect/accept and ends with the process.
  struct State {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::optional<DistGroup> group;
    std::string error;
  };
  auto state = std::make_shared<State>();
  std::thread([state] {
    std::optional<DistGroup> g;
    std::string error;
    try {
      g = dist::init(true, "any");
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::lock_guard<std::mutex> lock(state->m);
    state->group = g;
    state->error = error;
    state->done = true;
    state->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(state->m);
  if (!state->cv.wait_for(lock, std::chrono::duration<double>(timeout_s), [&] { return state->done; }))
    throw Error("distributed",
                rank_hint() + " could not connect to every rank within " + std::to_string(static_cast<int>(timeout_s)) +
                    " s (MLXGP_DISTRIBUTED_TIMEOUT): is every rank started, and does the hostfile list addresses "
                    "the ranks can reach?",
                ErrorKind::Runtime);
  if (!state->group)
    throw Error("distributed", "could not join the launcher's group: " + state->error, ErrorKind::Runtime);
  share_cores(ranks_on_this_host(state->group->rank()));
  return *state->group;
}

void check_same_on_all_ranks(const DistGroup& group, const std::string& what, const std::string& fingerprint,
                             uint64_t weights_hash) {
  const int n = group.size();
  if (n == 1) return;
  const uint64_t h = fnv1a(fingerprint);
  const int32_t words[4] = {static_cast<int32_t>(h & 0xffffffffu), static_cast<int32_t>(h >> 32),
                            static_cast<int32_t>(weights_hash & 0xffffffffu), static_cast<int32_t>(weights_hash >> 32)};
  auto all = dist::all_gather(mx::array(words, {1, 4}, mx::int32), group);
  mx::eval(all);
  const int32_t* w = all.data<int32_t>();
  for (int r = 1; r < n; ++r) {
    const bool same_text = w[4 * r] == w[0] && w[4 * r + 1] == w[1];
    const bool same_weights = w[4 * r + 2] == w[2] && w[4 * r + 3] == w[3];
    if (!same_text || !same_weights)
      fail("distributed", what + " differ between rank 0 and rank " + std::to_string(r) +
                              (same_text ? " (the weights differ)" : "") +
                              ": every rank must run the same model and settings");
  }
}

}  // namespace mlxgp
