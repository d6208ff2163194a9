// Watching the ranks of a distributed run for one that died, so a collective never waits for ever.
#pragma once

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "mlxgp/distributed.h"

namespace mlxgp {

// While alive, watches the connections of `group` (the sockets MLX's ring backend opened at
// distributed_init). When a peer hangs up (it exited or was killed) and this watch is still alive
// `grace_s` seconds later, `on_lost` runs on the watch's thread: the caller reports and ends the process,
// since MLX's ring backend can otherwise wait for ever in a collective issued after the failure. Keep it
// alive over the work that needs the other ranks, and end it before work rank 0 does alone (writing
// files), as the other ranks may exit then. Nothing to watch on a group of size 1 or without sockets.
class PeerWatch {
 public:
  PeerWatch(const DistGroup& group, std::function<void()> on_lost, double grace_s = 5.0);
  // Watches these connected sockets instead (tests; other socket transports).
  PeerWatch(std::vector<int> sockets, std::function<void()> on_lost, double grace_s = 5.0);
  ~PeerWatch();
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;

 private:
  void start(std::vector<int> sockets, std::function<void()> on_lost, double grace_s);
  struct State;
  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace mlxgp
