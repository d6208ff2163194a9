#include "mlxgp/paths.h"

#include <cstdlib>
#include <filesystem>

#include "mlxgp/error.h"

namespace mlxgp {

std::string cache_dir() {
  if (const char* env = std::getenv("MLXGP_CACHE"); env && *env) return env;
  return MLXGP_DEFAULT_CACHE_DIR;
}

std::string resolve_model_path(const std::string& spec) {
  if (spec != "default") return spec;
  auto p = std::filesystem::path(cache_dir()) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(p))
    fail("model", "the default model is not installed at " + p.string() + " (run scripts/setup.sh)");
  return p.string();
}

std::string version() { return MLXGP_VERSION; }

void reject_directory(const std::string& path, std::string_view component, std::string_view what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    fail(component, std::string(what) + (what.empty() ? "'" : " '") + path + "' is a directory, not a file");
}

}  // namespace mlxgp
