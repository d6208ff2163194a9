// Fault injection for the fault tests (tests/parity/test_faults.py, tests/server/test_server_faults.py).
// With MLXGP_FAULT_KILL_AT=<point>[:<n>][,...] the process sends itself SIGKILL, as `kill -9` would, the
// n-th time (default: the first) it reaches `point`, so a test can interrupt a write at the exact moment
// that matters instead of racing a timer. Points sit between the steps of every atomic write (data
// complete under the temporary name, renamed, pointer updated).
// With MLXGP_FAULT_THROW_AT (same form) the n-th visit throws a std::runtime_error that is not an
// mlxgp::Error, as MLX does when an allocation fails ("[malloc] ..."): the batch engine's points
// (batch.prefill, batch.choose, batch.step, batch.beam_step, batch.speculative_round) show that such a
// failure ends only the request it belongs to, or every running one when the step they share failed.
// A point throws once. Unset, a call costs one atomic load.
#pragma once

namespace mlxgp {

void fault_point(const char* name);

}  // namespace mlxgp
