#include "files.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <mlx/io.h>

#include "mlxgp/error.h"

namespace mlxgp::cli {

std::string read_file(const std::string& path, const std::string& component, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(component, "cannot read " + (what.empty() ? "" : what + " ") + "'" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void save_safetensors_atomic(const std::string& path,
                             const std::unordered_map<std::string, mlx::core::array>& tensors,
                             const std::string& component) {
  const std::string tmp = path + ".tmp.safetensors";  // MLX appends .safetensors to other names
  try {
    mlx::core::save_safetensors(tmp, tensors);
  } catch (const std::exception& e) {
    std::filesystem::remove(tmp);
    fail(component, "cannot write " + path + ": " + e.what());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    fail(component, "cannot write " + path + ": " + ec.message());
  }
}

}  // namespace mlxgp::cli
