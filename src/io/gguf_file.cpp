// GGUF validation: a bounds-checked walk of the header (GGUF v2/v3 layout: magic, version, tensor
// and metadata counts, typed key/values, tensor infos, aligned data) before MLX parses the file.
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include <mlx/mlx.h>

#include "io/checkpoint_files.h"
#include "mlxgp/error.h"

namespace mlxgp::io {

namespace {

struct GgmlType {
  const char* name;
  uint64_t block;  // elements per block
  uint64_t bytes;  // bytes per block
  bool supported;  // loadable by mx::load_gguf and the models
};

// ggml type ids -> block layout (ggml.h / gguf spec).
const std::map<uint32_t, GgmlType> kTypes = {
    {0, {"F32", 1, 4, true}},        {1, {"F16", 1, 2, true}},        {2, {"Q4_0", 32, 18, true}},
    {3, {"Q4_1", 32, 20, true}},     {6, {"Q5_0", 32, 22, false}},    {7, {"Q5_1", 32, 24, false}},
    {8, {"Q8_0", 32, 34, true}},     {9, {"Q8_1", 32, 36, false}},    {10, {"Q2_K", 256, 84, false}},
    {11, {"Q3_K", 256, 110, false}}, {12, {"Q4_K", 256, 144, false}}, {13, {"Q5_K", 256, 176, false}},
    {14, {"Q6_K", 256, 210, false}}, {15, {"Q8_K", 256, 292, false}}, {24, {"I8", 1, 1, false}},
    {25, {"I16", 1, 2, false}},      {26, {"I32", 1, 4, false}},      {27, {"I64", 1, 8, false}},
    {28, {"F64", 1, 8, false}},      {30, {"BF16", 1, 2, false}},
};

class Walker {
 public:
  Walker(const std::string& path, uint64_t size) : path_(path), size_(size), f_(path, std::ios::binary) {
    if (!f_) fail("load", "cannot read " + path);
  }
  [[noreturn]] void bad(const std::string& why) const { fail("gguf", path_ + ": " + why); }
  void need(uint64_t n) const {
    if (n > size_ - pos_) bad("file is truncated (header needs " + std::to_string(n) + " more bytes at offset " +
                              std::to_string(pos_) + ")");
  }
  template <class T>
  T read() {
    need(sizeof(T));
    T v;
    f_.read(reinterpret_cast<char*>(&v), sizeof(T));
    if (!f_) bad("read error");
    pos_ += sizeof(T);
    return v;
  }
  void skip(uint64_t n) {
    need(n);
    f_.seekg(static_cast<std::streamoff>(n), std::ios::cur);
    pos_ += n;
  }
  std::string string() {
    auto n = read<uint64_t>();
    need(n);
    std::string s(n, '\0');
    f_.read(s.data(), static_cast<std::streamsize>(n));
    pos_ += n;
    return s;
  }
  uint64_t pos() const { return pos_; }
  uint64_t size() const { return size_; }

 private:
  std::string path_;
  uint64_t size_, pos_ = 0;
  std::ifstream f_;
};

// Skips one metadata value; returns its integer value for the alignment key (or 0).
uint64_t skip_value(Walker& w, uint32_t type, int depth = 0) {
  static const uint64_t scalar[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
  if (type > 12) w.bad("unknown metadata value type " + std::to_string(type));
  if (type == 8) {
    w.string();
    return 0;
  }
  if (type == 9) {
    if (depth > 2) w.bad("metadata arrays nested too deeply");
    auto elem = w.read<uint32_t>();
    auto count = w.read<uint64_t>();
    if (elem > 12) w.bad("unknown metadata array type " + std::to_string(elem));
    if (elem != 8 && elem != 9) {
      if (count > w.size() / scalar[elem]) w.bad("metadata array is larger than the file");
      w.skip(count * scalar[elem]);
    } else {
      for (uint64_t i = 0; i < count; ++i) skip_value(w, elem, depth + 1);
    }
    return 0;
  }
  if (type == 4) return w.read<uint32_t>();
  w.skip(scalar[type]);
  return 0;
}

void validate(const std::string& path) {
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) fail("load", "cannot read " + path);
  Walker w(path, size);
  if (size < 4) w.bad("file is truncated (no GGUF magic)");
  if (w.read<uint32_t>() != 0x46554747u) w.bad("not a GGUF file (bad magic)");
  auto version = w.read<uint32_t>();
  if (version != 2 && version != 3)
    w.bad("unsupported GGUF version " + std::to_string(version) + " (supported: 2, 3)");
  auto n_tensors = w.read<uint64_t>();
  auto n_kv = w.read<uint64_t>();
  // Each entry takes at least 8 bytes, so larger counts cannot be genuine.
  if (n_tensors > size / 8 || n_kv > size / 8) w.bad("tensor/metadata counts exceed the file size (corrupt)");
  uint64_t alignment = 32;
  for (uint64_t i = 0; i < n_kv; ++i) {
    auto key = w.string();
    auto type = w.read<uint32_t>();
    auto v = skip_value(w, type);
    if (key == "general.alignment") {
      if (type != 4 || v == 0 || (v & (v - 1)) != 0) w.bad("general.alignment must be a power of two");
      alignment = v;
    }
  }
  struct Info {
    std::string name;
    uint64_t numel, offset;
    const GgmlType* type;
    uint64_t ne0;
  };
  std::vector<Info> infos;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    Info t;
    t.name = w.string();
    auto n_dims = w.read<uint32_t>();
    if (n_dims == 0 || n_dims > 4) w.bad("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dims");
    t.numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      auto ne = w.read<uint64_t>();
      if (d == 0) t.ne0 = ne;
      if (ne > (1ULL << 31) || (t.numel *= ne) > (1ULL << 40)) w.bad("tensor '" + t.name + "' has an invalid shape");
    }
    auto type_id = w.read<uint32_t>();
    auto it = kTypes.find(type_id);
    if (it == kTypes.end()) w.bad("tensor '" + t.name + "' has unknown ggml type " + std::to_string(type_id));
    t.type = &it->second;
    if (!t.type->supported)
      w.bad("tensor '" + t.name + "' has unsupported type " + t.type->name + " (supported: F32, F16, Q4_0, Q4_1, Q8_0)");
    if (t.ne0 % t.type->block != 0) w.bad("tensor '" + t.name + "' row size is not a multiple of its block size");
    t.offset = w.read<uint64_t>();
    infos.push_back(t);
  }
  const uint64_t data_start = (w.pos() + alignment - 1) / alignment * alignment;
  if (data_start > size) w.bad("file is truncated (no tensor data)");
  for (auto& t : infos) {
    const uint64_t bytes = t.numel / t.type->block * t.type->bytes;
    if (t.offset > size - data_start || bytes > size - data_start - t.offset)
      w.bad("file is truncated: tensor '" + t.name + "' data ends past the end of the file");
  }
}

}  // namespace

mx::GGUFLoad load_gguf_checked(const std::string& path) {
  validate(path);
  try {
    return mx::load_gguf(path);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("gguf", path + ": " + e.what());
  }
}

}  // namespace mlxgp::io
