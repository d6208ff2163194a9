// PeerWatch: MLX's ring backend reports a dead peer by failing the collectives pending at that moment,
// but a collective issued afterwards can wait for ever (seen here: the stream thread blocked in
// RingGroup::all_reduce after "Too many send/recv errors"). The watch polls the group's own sockets for
// a hang-up (no bytes are read or written) and, if the work has not ended soon after, reports it. A peer
// that stops without hanging up (SIGSTOP, a frozen machine, a cut cable) is found by a heartbeat on
// connections of the watch's own.
#include "mlxgp/peer_watch.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <cstdlib>
#include <fstream>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

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

#ifdef MSG_NOSIGNAL
constexpr int kSendFlags = MSG_DONTWAIT | MSG_NOSIGNAL;
#else
constexpr int kSendFlags = MSG_DONTWAIT;  // the CLI ignores SIGPIPE (distributed_run.cpp)
#endif

// Rank 0's host as the ring hostfile gives it to the others ("" when it is not a ring hostfile).
std::string rank0_host() {
  const char* path = std::getenv("MLX_HOSTFILE");
  if (!path || !*path) return {};
  try {
    std::ifstream in(path);
    const auto addr = nlohmann::json::parse(in).at(0).at(0).get<std::string>();
    return addr.substr(0, addr.rfind(':'));
  } catch (const std::exception&) {
    return {};
  }
}

// One heartbeat connection between rank 0 and each other rank. Rank 0 listens on a port of its choice and
// sends its number to the others (one collective, on every rank); a rank that cannot connect within a few
// seconds goes without (the hang-up watch still covers it).
std::vector<int> heartbeat_connections(const DistGroup& group) {
  const std::string host = rank0_host();
  int listener = -1, port = 0;
  if (group.rank() == 0 && !host.empty()) {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof addr;
    if (listener >= 0 && bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        listen(listener, group.size()) == 0 && getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      port = ntohs(addr.sin_port);
  }
  port = std::atoi(broadcast_text_from_rank0(group, std::to_string(port)).c_str());
  std::vector<int> fds;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  if (port > 0 && group.rank() == 0) {
    while (static_cast<int>(fds.size()) < group.size() - 1) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{listener, POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      const int fd = accept(listener, nullptr, nullptr);
      if (fd >= 0) fds.push_back(fd);
    }
  } else if (port > 0) {
    addrinfo hints{}, *found = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) == 0) {
      while (fds.empty() && std::chrono::steady_clock::now() < deadline) {
        for (auto* a = found; a && fds.empty(); a = a->ai_next) {
          const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
          if (fd < 0) continue;
          if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) fds.push_back(fd);
          else close(fd);
        }
        if (fds.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      freeaddrinfo(found);
    }
  }
  if (listener >= 0) close(listener);
  return fds;
}

}  // namespace

struct PeerWatch::State {
  std::mutex m;
  std::condition_variable cv;
  bool stop = false;
};

PeerWatch::PeerWatch(const DistGroup& group, OnLost on_lost, double grace_s, double stall_s)
    : state_(std::make_shared<State>()) {
  if (group.size() == 1) return;
  // Not a socket backend (MPI, NCCL) when there is none: those report failures themselves.
  auto sockets = connected_sockets();
  if (sockets.empty()) return;
  owned_ = heartbeat_connections(group);
  start(std::move(sockets), std::move(on_lost), grace_s, owned_, stall_s < 0 ? distributed_timeout() : stall_s);
}

PeerWatch::PeerWatch(std::vector<int> sockets, OnLost on_lost, double grace_s, std::vector<int> heartbeats,
                     double stall_s)
    : state_(std::make_shared<State>()) {
  start(std::move(sockets), std::move(on_lost), grace_s, std::move(heartbeats), stall_s);
}

void PeerWatch::start(std::vector<int> fds, OnLost on_lost, double grace_s, std::vector<int> heartbeats,
                      double stall_s) {
  if (fds.empty() && heartbeats.empty()) return;
  thread_ = std::thread([state = state_, fds, heartbeats, on_lost = std::move(on_lost), grace_s, stall_s] {
    using clock = std::chrono::steady_clock;
    std::unique_lock<std::mutex> lock(state->m);
    std::optional<clock::time_point> lost_at;
    std::vector<clock::time_point> heard(heartbeats.size(), clock::now());
    clock::time_point beat_at{};
    while (!state->stop) {
      state->cv.wait_for(lock, std::chrono::milliseconds(250));
      if (state->stop) return;
      const auto now = clock::now();
      if (now - beat_at >= std::chrono::seconds(1)) {
        for (int fd : heartbeats) (void)send(fd, "h", 1, kSendFlags);
        beat_at = now;
      }
      for (size_t i = 0; i < heartbeats.size(); ++i) {
        char buffer[256];
        ssize_t got = 0;
        while ((got = recv(heartbeats[i], buffer, sizeof buffer, MSG_DONTWAIT)) > 0) heard[i] = now;
        if (got == 0 && !lost_at) lost_at = now;  // the peer closed it: as a hang-up below
        if (now - heard[i] > std::chrono::duration<double>(stall_s)) {
          on_lost("no sign of life from it for " + std::to_string(static_cast<int>(stall_s)) +
                  " s (MLXGP_DISTRIBUTED_TIMEOUT): it is stopped, frozen or cut off");
          return;
        }
      }
      if (!lost_at) {
        std::vector<pollfd> p;
        for (int fd : fds) p.push_back({fd, kHangUp, 0});
        if (poll(p.data(), p.size(), 0) > 0)
          for (auto& e : p)
            if (e.revents & kHangUp) lost_at = now;
        continue;
      }
      // A peer hung up. Usually the main thread's collective fails and the process ends on its own (or
      // the work ends normally as the peer exits after its last step); otherwise, after the grace time:
      if (now - *lost_at > std::chrono::duration<double>(grace_s)) {
        on_lost("its connection closed and this rank's step did not finish");
        return;
      }
    }
  });
}

PeerWatch::~PeerWatch() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(state_->m);
      state_->stop = true;
    }
    state_->cv.notify_all();
    thread_.join();
  }
  for (int fd : owned_) close(fd);
}

}  // namespace mlxgp
