// Safetensors files users save and load (steering vectors, soft prompts, extra parameters, caches,
// adapters). Reads are validated before MLX sees the file; writes are atomic.
#pragma once

#include <string>
#include <unordered_map>

#include <mlx/array.h>

namespace mlxgp {

struct SafetensorsContents {
  std::unordered_map<std::string, mlx::core::array> tensors;
  std::unordered_map<std::string, std::string> metadata;
};

// Throws [safetensors] naming the file and the problem (missing, truncated, corrupt header, ...).
SafetensorsContents load_safetensors_file(const std::string& path);

// Throws [component] "<what> holds NaN or infinite values" unless every element of a floating-point
// array is finite (integer arrays pass). Evaluates the array.
void require_finite(const mlx::core::array& a, const std::string& component, const std::string& what);

// Writes to a temporary file beside `path`, then renames it over `path`, so a reader (or a crash
// mid-write) never leaves a half-written file. Throws [component] on failure.
void save_safetensors_atomic(const std::string& path, const std::unordered_map<std::string, mlx::core::array>& tensors,
                             const std::unordered_map<std::string, std::string>& metadata = {},
                             const std::string& component = "save");

}  // namespace mlxgp
