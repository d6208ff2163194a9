// libFuzzer target: see fuzz_targets.h (fuzz_prompt_cache) and docs/reliability.md (Fuzzing).
#include <cstdlib>

#include "fuzz_targets.h"

// MLXGP_FUZZ_WRITE_SEED=<file>: writes a valid prompt cache of the tiny model (its seed) and exits.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* path = std::getenv("MLXGP_FUZZ_WRITE_SEED")) {
    auto model = mlxgp::fuzz::tiny_model();
    mlxgp::save_prompt_cache(path, mlxgp::make_prompt_cache(*model, {1, 2, 3, 4, 5}));
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return mlxgp::fuzz::fuzz_prompt_cache(data, size);
}
