// Checked readers for checkpoint files. MLX trusts file headers (a truncated or corrupt file can
// crash it), so each file is validated here before MLX sees it.
#pragma once

#include <string>
#include <unordered_map>

#include <mlx/io.h>

#include "mlxgp/model.h"

namespace mx = mlx::core;

namespace mlxgp::io {

// Validates the 8-byte header length, the JSON header, dtypes, shapes and data offsets against the
// file size, then loads the tensors. Throws [safetensors] naming the file and the problem.
WeightMap load_safetensors_checked(const std::string& path);
// The same checks without loading.
void validate_safetensors(const std::string& path);

// Walks the GGUF header (magic, version, metadata, tensor infos) and checks every tensor's type and
// that its data lies inside the file, then reads the tensors (gguf_file.cpp: which llama.cpp types
// load and how they are stored). Throws [gguf].
mx::GGUFLoad load_gguf_checked(const std::string& path);
// The metadata alone (tokenizer loading), after the same checks.
std::unordered_map<std::string, mx::GGUFMetaData> load_gguf_metadata(const std::string& path);

// Whole-file read; throws [load] when the file cannot be read.
std::string read_text_file(const std::string& path);

}  // namespace mlxgp::io
