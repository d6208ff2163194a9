// Safetensors validation: header length, JSON header, dtype/shape/offset consistency with the file
// size (the format's spec: 8-byte LE header size, JSON {name: {dtype, shape, data_offsets}}, data).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>
#include <vector>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "core/fault.h"
#include "core/fsync.h"
#include "io/checkpoint_files.h"
#include "mlxgp/error.h"
#include "mlxgp/paths.h"
#include "mlxgp/safetensors_io.h"

namespace mx = mlx::core;

namespace mlxgp::io {

namespace fs = std::filesystem;

std::string read_text_file(const std::string& path) {
  reject_directory(path, "load");
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("load", "cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

namespace {

// Dtypes MLX can load from safetensors, with their element sizes.
const std::map<std::string, int> kDtypeSizes = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"U16", 2}, {"I16", 2},  {"U32", 4},
    {"I32", 4},  {"U64", 8}, {"I64", 8}, {"F16", 2}, {"BF16", 2}, {"F32", 4},
};

void validate(const std::string& path) {
  auto bad = [&](const std::string& why) { fail("safetensors", path + ": " + why); };
  reject_directory(path, "safetensors");
  std::error_code ec;
  const auto file_size = fs::file_size(path, ec);
  if (ec) fail("load", "cannot read " + path);
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("load", "cannot read " + path);
  if (file_size < 8) bad("file is truncated (no header)");
  unsigned char len_bytes[8];
  f.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len == 0 || header_len > file_size - 8)
    bad("header length " + std::to_string(header_len) + " does not fit the file size " + std::to_string(file_size) +
        " (truncated or not a safetensors file)");
  std::string header(header_len, '\0');
  f.read(header.data(), static_cast<std::streamsize>(header_len));
  if (!f) bad("cannot read the header");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const nlohmann::json::exception&) {
    bad("the header is not valid JSON (corrupt file)");
  }
  if (!j.is_object()) bad("the header is not a JSON object");
  const uint64_t data_size = file_size - 8 - header_len;
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> ranges;  // [begin, end), name
  for (auto& [name, info] : j.items()) {
    if (name == "__metadata__") continue;
    const std::string t = "tensor '" + name + "'";
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
      bad(t + " lacks dtype/shape/data_offsets");
    const auto& dt = info["dtype"];
    if (!dt.is_string() || !kDtypeSizes.count(dt.get<std::string>())) bad(t + " has unsupported dtype " + dt.dump());
    uint64_t numel = 1;
    const auto& shape = info["shape"];
    if (!shape.is_array() || shape.size() > 8) bad(t + " has an invalid shape");
    for (auto& d : shape) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (1ULL << 31)) bad(t + " has an invalid shape");
      numel *= d.get<uint64_t>();
      if (numel > (1ULL << 40)) bad(t + " has an invalid shape");
    }
    const auto& off = info["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      bad(t + " has invalid data_offsets");
    const uint64_t begin = off[0], end = off[1];
    if (begin > end || end > data_size)
      bad(t + " data [" + std::to_string(begin) + ", " + std::to_string(end) + ") lies outside the " +
          std::to_string(data_size) + " data bytes (truncated file?)");
    if (end - begin != numel * kDtypeSizes.at(dt.get<std::string>()))
      bad(t + " data size does not match its dtype and shape");
    ranges.emplace_back(begin, end, name);
  }
  // As the safetensors library does (Metadata::validate): sorted by offset, the tensors tile the data
  // area exactly, so no two tensors share bytes and no byte is unaccounted for.
  std::sort(ranges.begin(), ranges.end());
  uint64_t at = 0;
  const std::string* prev = nullptr;
  for (auto& [begin, end, name] : ranges) {
    auto span = [](uint64_t b, uint64_t e) {
      std::string s(1, '[');
      s.append(std::to_string(b)).append(", ").append(std::to_string(e)).append(")");
      return s;
    };
    if (begin < at)
      bad("invalid offset: tensor '" + name + "' data " + span(begin, end) + " overlaps tensor '" + *prev +
          "' (data up to " + std::to_string(at) + ")");
    if (begin > at)
      bad("invalid offset: tensor '" + name + "' data starts at " + std::to_string(begin) + " but the previous " +
          "tensor ends at " + std::to_string(at) + " (tensors must tile the data area)");
    at = end;
    prev = &name;
  }
  if (at != data_size)
    bad("invalid offset: the tensors end at byte " + std::to_string(at) + " of a " + std::to_string(data_size) +
        "-byte data area (trailing bytes)");
}

}  // namespace

void validate_safetensors(const std::string& path) { validate(path); }

WeightMap load_safetensors_checked(const std::string& path) {
  validate(path);
  try {
    auto [arrays, meta] = mx::load_safetensors(path);
    WeightMap w;
    for (auto& [k, v] : arrays) w.emplace(k, v);
    return w;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("safetensors", path + ": " + e.what());
  }
}

}  // namespace mlxgp::io

namespace mlxgp {

SafetensorsContents load_safetensors_file(const std::string& path) {
  io::validate_safetensors(path);
  try {
    auto [arrays, meta] = mx::load_safetensors(path);
    SafetensorsContents out;
    for (auto& [k, v] : arrays) out.tensors.emplace(k, v);
    for (auto& [k, v] : meta) out.metadata.emplace(k, v);
    return out;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("safetensors", path + ": " + e.what());
  }
}

void require_finite(const mx::array& a, const std::string& component, const std::string& what) {
  if (!mx::issubdtype(a.dtype(), mx::floating) || a.size() == 0) return;
  if (!mx::all(mx::isfinite(a)).item<bool>()) fail(component, what + " holds NaN or infinite values");
}

void save_safetensors_atomic(const std::string& path, const std::unordered_map<std::string, mx::array>& tensors,
                             const std::unordered_map<std::string, std::string>& metadata,
                             const std::string& component) {
  // MLX appends ".safetensors" to names without it, so the temporary name keeps that suffix.
  const std::string tmp = path + ".tmp.safetensors";
  std::error_code ec;
  try {
    mx::save_safetensors(tmp, tensors, metadata);
    // MLX's writer does not report a short write (disk full, RLIMIT_FSIZE): a file whose tensors do not
    // fill the data area it declares fails validation here, before it can replace anything.
    io::validate_safetensors(tmp);
  } catch (const std::exception& e) {
    std::filesystem::remove(tmp, ec);
    fail(component, "cannot write " + path + ": " +
                        (dynamic_cast<const Error*>(&e) ? "the file came out short (disk full?)" : e.what()));
  }
  if (!fsync_path(tmp)) {
    std::filesystem::remove(tmp, ec);
    fail(component, "cannot write " + path + ": flushing it to disk failed");
  }
  fault_point("safetensors-written");
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    fail(component, "cannot write " + path + ": " + ec.message());
  }
}

}  // namespace mlxgp
