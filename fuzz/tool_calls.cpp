// libFuzzer target: see fuzz_targets.h (fuzz_tool_calls) and docs/reliability.md (Fuzzing).
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return mlxgp::fuzz::fuzz_tool_calls(data, size);
}
