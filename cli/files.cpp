#include "files.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "mlxgp/error.h"
#include "mlxgp/paths.h"
#include "mlxgp/safetensors_io.h"

namespace mlxgp::cli {

std::string read_file(const std::string& path, const std::string& component, const std::string& what) {
  reject_directory(path, component, what);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(component, "cannot read " + (what.empty() ? "" : what + " ") + "'" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void check_output_file(const std::string& path, const std::string& flag, const std::string& component) {
  namespace fs = std::filesystem;
  if (path.empty()) fail(component, flag + " needs a file name");
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(component, flag + " '" + path + "' is a directory, not a file");
  auto dir = fs::path(path).parent_path();
  if (!dir.empty() && !fs::is_directory(dir, ec))
    fail(component, flag + ": directory '" + dir.string() + "' does not exist");
  // The atomic writers write `<path>.tmp.safetensors` first: probe that name, leaving nothing behind.
  const std::string probe = path + ".tmp.safetensors";
  const bool existed = fs::exists(probe, ec);
  std::FILE* f = std::fopen(probe.c_str(), "ab");
  if (!f) fail(component, "cannot write " + flag + " '" + path + "': " + std::strerror(errno));
  std::fclose(f);
  if (!existed) fs::remove(probe, ec);
}

void save_safetensors_atomic(const std::string& path, const std::unordered_map<std::string, mlx::core::array>& tensors,
                             const std::string& component) {
  mlxgp::save_safetensors_atomic(path, tensors, {}, component);
}

}  // namespace mlxgp::cli
