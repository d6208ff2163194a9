// Fault injection for the fault tests (tests/parity/test_faults.py): with
// MLXGP_FAULT_KILL_AT=<point>[:<n>][,...] the process sends itself SIGKILL, as `kill -9` would, the n-th
// time (default: the first) it reaches `point`, so a test can interrupt a write at the exact moment
// that matters instead of racing a timer. Points sit between the steps of every atomic write (data
// complete under the temporary name, renamed, pointer updated). Unset, a call costs one cached lookup.
#pragma once

namespace mlxgp {

void fault_point(const char* name);

}  // namespace mlxgp
