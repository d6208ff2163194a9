// File helpers shared by the subcommands.
#pragma once

#include <string>
#include <unordered_map>

#include <mlx/array.h>

namespace mlxgp::cli {

// Whole-file read; throws [component] "cannot read <what> 'path'" (what: e.g. "--config file").
std::string read_file(const std::string& path, const std::string& component = "cli", const std::string& what = "");

// Checks before any work that `path` can be written as an output file (flag: "--out", "--scores-out"):
// not empty, not a directory, its folder exists, and a file can be created beside it (the temporary
// name the atomic write uses, removed again). Throws [component] in one line.
void check_output_file(const std::string& path, const std::string& flag, const std::string& component = "cli");

// Writes beside `path` and renames, so a reader never sees a half-written file; throws [component].
void save_safetensors_atomic(const std::string& path, const std::unordered_map<std::string, mlx::core::array>& tensors,
                             const std::string& component = "cli");

}  // namespace mlxgp::cli
