// libFuzzer target: see fuzz_targets.h (fuzz_server_request) and docs/reliability.md (Fuzzing).
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return mlxgp::fuzz::fuzz_server_request(data, size, MLXGP_FUZZ_DATA_DIR);
}
