#include "files.h"

#include <fstream>
#include <sstream>

#include "mlxgp/error.h"
#include "mlxgp/safetensors_io.h"

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
  mlxgp::save_safetensors_atomic(path, tensors, {}, component);
}

}  // namespace mlxgp::cli
