// Watching the ranks of a distributed run for one that died, so a collective never waits for ever.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mlxgp/distributed.h"

namespace mlxgp {

// While alive, watches the connections of `group` (the sockets MLX's ring backend opened at
// distributed_init). When a peer hangs up (it exited or was killed) and this watch is still alive
// `grace_s` seconds later, `on_lost` runs on the watch's thread with the reason: the caller reports and ends
// the process, since MLX's ring backend can otherwise wait for ever in a collective issued after the
// failure. A peer that stops without hanging up (frozen, stopped, cut off by the network) keeps its
// sockets open: on the ring backend the ranks also send each other a heartbeat from their watch threads
// (rank 0 and each other rank, over a connection of their own), so one that has not heard from another for
// `stall_s` seconds (< 0: MLXGP_DISTRIBUTED_TIMEOUT, default 60) reports it too; a rank busy with a long
// step still beats. Keep it alive over the work that needs the other ranks, and end it before work rank 0
// does alone (writing files), as the other ranks may exit then. Constructing it is a collective (rank 0
// sends its heartbeat port): every rank must construct it at the same point. Nothing to watch on a group
// of size 1 or without sockets.
class PeerWatch {
 public:
  using OnLost = std::function<void(const std::string& why)>;
  PeerWatch(const DistGroup& group, OnLost on_lost, double grace_s = 5.0, double stall_s = -1);
  // Watches these connected sockets instead (tests; other socket transports); `heartbeats`: connections to
  // peers that beat as above (none: no heartbeat).
  PeerWatch(std::vector<int> sockets, OnLost on_lost, double grace_s = 5.0, std::vector<int> heartbeats = {},
            double stall_s = 60.0);
  ~PeerWatch();
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;

 private:
  void start(std::vector<int> sockets, OnLost on_lost, double grace_s, std::vector<int> heartbeats, double stall_s);
  struct State;
  std::shared_ptr<State> state_;
  std::thread thread_;
  std::vector<int> owned_;  // the heartbeat connections this watch opened
};

}  // namespace mlxgp
