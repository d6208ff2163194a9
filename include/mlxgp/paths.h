// Where cached assets (the default model, converted models) live.
#pragma once

#include <string>

namespace mlxgp {

// $MLXGP_CACHE if set, else the cache folder chosen at build time (<repo>/.cache).
std::string cache_dir();

// Resolves a --model argument: "default" names the SmolLM2-135M-Instruct Q4_1 GGUF in the cache;
// anything else is returned as given. Throws [model] if "default" was never installed.
std::string resolve_model_path(const std::string& spec);

std::string version();

}  // namespace mlxgp
