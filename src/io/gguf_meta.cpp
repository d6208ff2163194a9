#include "io/gguf_meta.h"

#include <mlx/mlx.h>

#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::io {

std::optional<double> gguf_number(const GgufMeta& meta, const std::string& key) {
  auto it = meta.find(key);
  if (it == meta.end()) return std::nullopt;
  auto* a = std::get_if<mx::array>(&it->second);
  if (!a || a->size() != 1) fail("gguf", "metadata '" + key + "' is not a number");
  return mx::astype(mx::reshape(*a, {}), mx::float64, mx::Device::cpu).item<double>();
}

int gguf_count(const GgufMeta& meta, const std::string& key) {
  auto v = gguf_number(meta, key);
  if (!v) fail("gguf", "metadata '" + key + "' is missing");
  if (*v < 0 || *v > 1e9) fail("gguf", "metadata '" + key + "' is out of range");
  return static_cast<int>(*v);
}

int gguf_count_or(const GgufMeta& meta, const std::string& key, int fallback) {
  return meta.count(key) ? gguf_count(meta, key) : fallback;
}

std::string gguf_string(const GgufMeta& meta, const std::string& key) {
  auto it = meta.find(key);
  if (it == meta.end()) return "";
  auto* s = std::get_if<std::string>(&it->second);
  return s ? *s : "";
}

}  // namespace mlxgp::io
