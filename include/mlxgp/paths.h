// Where cached assets (the default model, converted models) live.
#pragma once

#include <string>
#include <string_view>

namespace mlxgp {

// $MLXGP_CACHE if set, else the cache folder chosen at build time (<repo>/.cache).
std::string cache_dir();

// Resolves a --model argument: "default" names the SmolLM2-135M-Instruct Q4_1 GGUF in the cache;
// anything else is returned as given. Throws [model] if "default" was never installed.
std::string resolve_model_path(const std::string& spec);

std::string version();

// Throws [component] "<what> '<path>' is a directory, not a file" when `path` names a directory (reading
// one with a stream fails obscurely); anything else (missing, unreadable) is left to the caller's read.
void reject_directory(const std::string& path, std::string_view component, std::string_view what = "");

}  // namespace mlxgp
