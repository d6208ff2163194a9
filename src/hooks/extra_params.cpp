#include "mlxgp/extra_params.h"

#include <unordered_map>

#include "mlxgp/error.h"
#include "mlxgp/safetensors_io.h"

namespace mx = mlx::core;

namespace mlxgp {

void ExtraParams::set(const std::string& key, const mx::array& value) {
  if (key.empty()) fail("params", "an extra parameter needs a non-empty name");
  items_.insert_or_assign(key, value);
}

const mx::array& ExtraParams::get(const std::string& key) const {
  auto it = items_.find(key);
  if (it == items_.end()) fail("params", "no extra parameter '" + key + "'");
  return it->second;
}

std::vector<std::string> ExtraParams::keys() const {
  std::vector<std::string> out;
  for (auto& [k, v] : items_) out.push_back(k);
  return out;
}

void ExtraParams::save(const std::string& path) const {
  if (items_.empty()) fail("params", "there are no extra parameters to save");
  std::unordered_map<std::string, mx::array> tensors(items_.begin(), items_.end());
  save_safetensors_atomic(path, tensors, {{"format", "mlxgp-extra-params"}}, "params");
}

void ExtraParams::load(const std::string& path) {
  auto contents = load_safetensors_file(path);
  for (auto& [k, v] : contents.tensors) items_.insert_or_assign(k, v);
}

}  // namespace mlxgp
