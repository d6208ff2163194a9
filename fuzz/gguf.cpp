// libFuzzer target: see fuzz_targets.h (fuzz_gguf) and docs/reliability.md (Fuzzing).
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return mlxgp::fuzz::fuzz_gguf(data, size); }
