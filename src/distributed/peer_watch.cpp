// PeerWatch: MLX's ring backend reports a dead peer by failing the collectives pending at that moment,
// but a collective issued afterwards can wait for ever (seen here: the stream thread blocked in
// RingGroup::all_reduce after "Too many send/recv errors"). The watch polls the group's own sockets for
// a hang-up (no bytes are read or written) and, if the work has not ended soon after, reports it.
#include "mlxgp/peer_watch.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <vector>

#include <unistd.h>

namespace mlxgp {

namespace {

// The process's connected stream sockets: after distributed_init, the ring backend's connections.
std::vector<int> connected_sockets() {
  std::vector<int> fds;
  struct rlimit rl{};
  const int limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? static_cast<int>(rl.rlim_cur) : 65536;
  for (int fd = 3; fd < limit; ++fd) {
    struct stat st{};
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) continue;
    struct sockaddr_storage peer{};
    socklen_t plen = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) fds.push_back(fd);
  }
  return fds;
}

#ifdef POLLRDHUP
constexpr short kHangUp = POLLRDHUP | POLLHUP | POLLERR | POLLNVAL;
#else
constexpr short kHangUp = POLLHUP | POLLERR | POLLNVAL;
#endif

}  // namespace

struct PeerWatch::State {
  std::mutex m;
  std::condition_variable cv;
  bool stop = false;
};

PeerWatch::PeerWatch(const DistGroup& group, std::function<void()> on_lost, double grace_s)
    : state_(std::make_shared<State>()) {
  if (group.size() == 1) return;
  // Not a socket backend (MPI, NCCL) when there is none: those report failures themselves.
  start(connected_sockets(), std::move(on_lost), grace_s);
}

PeerWatch::PeerWatch(std::vector<int> sockets, std::function<void()> on_lost, double grace_s)
    : state_(std::make_shared<State>()) {
  start(std::move(sockets), std::move(on_lost), grace_s);
}

void PeerWatch::start(std::vector<int> fds, std::function<void()> on_lost, double grace_s) {
  if (fds.empty()) return;
  thread_ = std::thread([state = state_, fds, on_lost = std::move(on_lost), grace_s] {
    std::unique_lock<std::mutex> lock(state->m);
    std::optional<std::chrono::steady_clock::time_point> lost_at;
    while (!state->stop) {
      state->cv.wait_for(lock, std::chrono::milliseconds(250));
      if (state->stop) return;
      if (!lost_at) {
        std::vector<pollfd> p;
        for (int fd : fds) p.push_back({fd, kHangUp, 0});
        if (poll(p.data(), p.size(), 0) > 0)
          for (auto& e : p)
            if (e.revents & kHangUp) lost_at = std::chrono::steady_clock::now();
        continue;
      }
      // A peer hung up. Usually the main thread's collective fails and the process ends on its own (or
      // the work ends normally as the peer exits after its last step); otherwise, after the grace time:
      if (std::chrono::steady_clock::now() - *lost_at > std::chrono::duration<double>(grace_s)) {
        on_lost();
        return;
      }
    }
  });
}

PeerWatch::~PeerWatch() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(state_->m);
    state_->stop = true;
  }
  state_->cv.notify_all();
  thread_.join();
}

}  // namespace mlxgp
