// Typed reads of GGUF metadata values (numbers arrive as 0-D MLX arrays, strings as std::string).
#pragma once

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <mlx/io.h>

namespace mlxgp::io {

using GgufMeta = std::unordered_map<std::string, mlx::core::GGUFMetaData>;

// The number under `key`, or nullopt when absent; throws [gguf] when the value is not one finite number
// within float's range.
std::optional<double> gguf_number(const GgufMeta& meta, const std::string& key);

// A count under `key` in [0, 1e9]; throws [gguf] naming the key when it is missing or out of range.
int gguf_count(const GgufMeta& meta, const std::string& key);

// A count under `key` when present (checked as gguf_count), else `fallback`.
int gguf_count_or(const GgufMeta& meta, const std::string& key, int fallback);

// llama.cpp's get_key_or_arr: a count under `key` for each of `layers` layers, one value for all or an array of one a
// layer; `fallback` for every layer when absent (nullopt: throws [gguf] naming the key), checked as gguf_count.
std::vector<int> gguf_layer_counts(const GgufMeta& meta, const std::string& key, int layers,
                                   std::optional<int> fallback = std::nullopt);

// A token id under `key` when present; throws [gguf] naming the key when it is not an int in [0, 2^31).
std::optional<int> gguf_token_id(const GgufMeta& meta, const std::string& key);

// The string under `key`, "" when absent or not a string.
std::string gguf_string(const GgufMeta& meta, const std::string& key);

}  // namespace mlxgp::io
