#include "io/gguf_meta.h"

#include <cmath>
#include <limits>

#include <mlx/mlx.h>

#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::io {

std::optional<double> gguf_number(const GgufMeta& meta, const std::string& key) {
  auto it = meta.find(key);
  if (it == meta.end()) return std::nullopt;
  auto* a = std::get_if<mx::array>(&it->second);
  if (!a || a->size() != 1) fail("gguf", "metadata '" + key + "' is not a number");
  const double v = mx::astype(mx::reshape(*a, {}), mx::float64, mx::Device::cpu).item<double>();
  // Every value the loaders read is stored as a float or int; beyond float's range it is corrupt, and
  // casting it would be undefined behaviour.
  if (!std::isfinite(v) || std::abs(v) > std::numeric_limits<float>::max())
    fail("gguf", "metadata '" + key + "' is not a finite float");
  return v;
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

std::vector<int> gguf_layer_counts(const GgufMeta& meta, const std::string& key, int layers,
                                   std::optional<int> fallback) {
  if (layers < 1) fail("gguf", "metadata '" + key + "' is per layer, and the model has no layers");
  auto it = meta.find(key);
  if (it == meta.end()) {
    if (!fallback) fail("gguf", "metadata '" + key + "' is missing");
    return std::vector<int>(layers, *fallback);
  }
  auto* a = std::get_if<mx::array>(&it->second);
  if (a && a->size() == 1) return std::vector<int>(layers, gguf_count(meta, key));
  if (!a || a->ndim() != 1 || a->size() != static_cast<size_t>(layers))
    fail("gguf",
         "metadata '" + key + "' must be a count or an array of one count a layer (" + std::to_string(layers) + ")");
  auto v = mx::astype(*a, mx::float64, mx::Device::cpu);
  mx::eval(v);
  std::vector<int> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const double x = v.data<double>()[i];
    if (!(x >= 0 && x <= 1e9) || x != std::floor(x)) fail("gguf", "metadata '" + key + "' is out of range");
    out.push_back(static_cast<int>(x));
  }
  return out;
}

std::optional<int> gguf_token_id(const GgufMeta& meta, const std::string& key) {
  auto v = gguf_number(meta, key);
  if (!v) return std::nullopt;
  if (*v < 0 || *v > std::numeric_limits<int>::max() || *v != std::floor(*v))
    fail("gguf", "metadata '" + key + "' is not a token id");
  return static_cast<int>(*v);
}

std::string gguf_string(const GgufMeta& meta, const std::string& key) {
  auto it = meta.find(key);
  if (it == meta.end()) return "";
  auto* s = std::get_if<std::string>(&it->second);
  return s ? *s : "";
}

}  // namespace mlxgp::io
