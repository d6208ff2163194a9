// GGUF reading: a bounds-checked walk of the header (GGUF v2/v3 layout: magic, version, tensor and
// metadata counts, typed key/values, tensor infos, aligned data), then each tensor read from the file
// ourselves (MLX's loader expands every llama.cpp type but Q4_0/Q4_1/Q4_K/Q8_0 to float16, and rounds
// Q4_K's scales to float16). Block formats are stored without widening to 16 bits:
// - as their raw blocks, uint8 [rows, row bytes], with a `<name>.ggml_type` scalar telling
//   layers::Linear to run kernels::ggml_matmul on them (SwitchLinear: ggml_gather_matmul for stacked
//   experts): Q2_K, Q3_K, Q6_K (16-value sub-blocks) and IQ4_NL, IQ4_XS (a non-uniform grid) always,
//   and every other block type where that kernel runs fused (keep_as_blocks), so resident weights are
//   the file's bytes;
// - elsewhere, the affine ones (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K) as MLX affine triples with
//   group 32 (uint32 codes packed little-endian, bits per value 4, 5 or 8; float32 scales and biases);
// - MXFP4 (gpt-oss's experts) as MLX mxfp4 pairs (uint32 codes, uint8 exponents; load_mxfp4).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include <mlx/allocator.h>
#include <mlx/mlx.h>

#include "io/checkpoint_files.h"
#include "io/gguf_meta.h"
#include "kernels/ggml_blocks.h"
#include "kernels/ggml_rows.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::io {

namespace {

namespace k = mlxgp::kernels;

enum class Storage { dense, affine, blocks, mxfp4, refused };

struct TypeInfo {
  const char* name;
  Storage storage;
  mx::Dtype dtype = mx::float32;  // dense types
  int bits = 0;                   // affine types
};

// ggml type ids (ggml.h) -> how mlxgp stores them. Everything else is refused by name.
const std::map<uint32_t, TypeInfo> kTypes = {
    {0, {"F32", Storage::dense, mx::float32}},
    {1, {"F16", Storage::dense, mx::float16}},
    {30, {"BF16", Storage::dense, mx::bfloat16}},
    {24, {"I8", Storage::dense, mx::int8}},
    {25, {"I16", Storage::dense, mx::int16}},
    {26, {"I32", Storage::dense, mx::int32}},
    {2, {"Q4_0", Storage::affine, mx::float32, 4}},
    {3, {"Q4_1", Storage::affine, mx::float32, 4}},
    {6, {"Q5_0", Storage::affine, mx::float32, 5}},
    {7, {"Q5_1", Storage::affine, mx::float32, 5}},
    {8, {"Q8_0", Storage::affine, mx::float32, 8}},
    {12, {"Q4_K", Storage::affine, mx::float32, 4}},
    {13, {"Q5_K", Storage::affine, mx::float32, 5}},
    {10, {"Q2_K", Storage::blocks}},
    {11, {"Q3_K", Storage::blocks}},
    {14, {"Q6_K", Storage::blocks}},
    {20, {"IQ4_NL", Storage::blocks}},
    {23, {"IQ4_XS", Storage::blocks}},
    {9, {"Q8_1", Storage::refused}},
    {15, {"Q8_K", Storage::refused}},
    {16, {"IQ2_XXS", Storage::refused}},
    {17, {"IQ2_XS", Storage::refused}},
    {18, {"IQ3_XXS", Storage::refused}},
    {19, {"IQ1_S", Storage::refused}},
    {21, {"IQ3_S", Storage::refused}},
    {22, {"IQ2_S", Storage::refused}},
    {27, {"I64", Storage::refused}},
    {28, {"F64", Storage::refused}},
    {29, {"IQ1_M", Storage::refused}},
    {34, {"TQ1_0", Storage::refused}},
    {35, {"TQ2_0", Storage::refused}},
    {39, {"MXFP4", Storage::mxfp4}},
};

class Walker {
 public:
  Walker(const std::string& path, uint64_t size) : path_(path), size_(size), f_(path, std::ios::binary) {
    if (!f_) fail("load", "cannot read " + path);
  }
  [[noreturn]] void bad(const std::string& why) const { fail("gguf", path_ + ": " + why); }
  void need(uint64_t n) const {
    if (n > size_ - pos_)
      bad("file is truncated (header needs " + std::to_string(n) + " more bytes at offset " + std::to_string(pos_) +
          ")");
  }
  void bytes(void* dst, uint64_t n) {
    need(n);
    f_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
    if (!f_) bad("read error");
    pos_ += n;
  }
  template <class T>
  T read() {
    T v;
    bytes(&v, sizeof(T));
    return v;
  }
  void skip(uint64_t n) {
    need(n);
    f_.seekg(static_cast<std::streamoff>(n), std::ios::cur);
    pos_ += n;
  }
  void seek(uint64_t pos) {
    if (pos > size_) bad("file is truncated");
    f_.seekg(static_cast<std::streamoff>(pos));
    pos_ = pos;
  }
  std::string string() {
    auto n = read<uint64_t>();
    need(n);
    std::string s(n, '\0');
    bytes(s.data(), n);
    return s;
  }
  uint64_t pos() const { return pos_; }
  uint64_t size() const { return size_; }

 private:
  std::string path_;
  uint64_t size_, pos_ = 0;
  std::ifstream f_;
};

// GGUF metadata value types 0..12 -> (MLX dtype, byte size); 8 is a string, 9 an array.
const std::pair<mx::Dtype, uint64_t> kValueTypes[] = {
    {mx::uint8, 1},  {mx::int8, 1},    {mx::uint16, 2}, {mx::int16, 2},   {mx::uint32, 4},
    {mx::int32, 4},  {mx::float32, 4}, {mx::bool_, 1},  {mx::float32, 0}, {mx::float32, 0},
    {mx::uint64, 8}, {mx::int64, 8},   {mx::float32, 8}};

// `count` numbers of GGUF value type `type` as a 1-D (or, for one scalar, 0-D) MLX array, as
// mx::load_gguf returns them (float64 narrowed to float32).
mx::array read_numbers(Walker& w, uint32_t type, uint64_t count, bool scalar) {
  const uint64_t size = kValueTypes[type].second;
  if (count > w.size() / size) w.bad("metadata array is larger than the file");
  std::vector<uint8_t> raw(count * size);
  w.bytes(raw.data(), raw.size());
  mx::Shape shape;
  if (!scalar) shape.push_back(static_cast<int>(count));
  if (type == 12) {
    std::vector<float> f(count);
    for (uint64_t i = 0; i < count; ++i) {
      double d;
      std::memcpy(&d, raw.data() + i * 8, 8);
      f[i] = static_cast<float>(d);
    }
    return mx::array(f.begin(), shape, mx::float32);
  }
  mx::array a(mx::allocator::malloc(raw.size()), shape, kValueTypes[type].first);
  if (!raw.empty()) std::memcpy(a.data<uint8_t>(), raw.data(), raw.size());  // an empty array: no memcpy from null
  return a;
}

// One metadata value (strings, numbers, one level of arrays; deeper arrays are skipped).
mx::GGUFMetaData read_value(Walker& w, uint32_t type, int depth = 0) {
  if (type > 12) w.bad("unknown metadata value type " + std::to_string(type));
  if (type == 8) return w.string();
  if (type != 9) return read_numbers(w, type, 1, true);
  if (depth > 2) w.bad("metadata arrays nested too deeply");
  auto elem = w.read<uint32_t>();
  auto count = w.read<uint64_t>();
  if (elem > 12) w.bad("unknown metadata array type " + std::to_string(elem));
  if (elem == 8) {
    if (count > w.size() / 8) w.bad("metadata array is larger than the file");
    std::vector<std::string> strs(count);
    for (auto& s : strs) s = w.string();
    return strs;
  }
  if (elem == 9) {
    if (count > w.size() / 12) w.bad("metadata array is larger than the file");
    for (uint64_t i = 0; i < count; ++i) read_value(w, elem, depth + 1);
    return std::monostate{};
  }
  return read_numbers(w, elem, count, false);
}

struct Info {
  std::string name;
  mx::Shape shape;  // MLX order (ggml's ne reversed)
  uint64_t numel = 1, offset = 0, bytes = 0;
  uint32_t type = 0;
  const TypeInfo* info = nullptr;
};

// Packs one row of codes (each < 2^bits) as MLX's affine layout: a little-endian bit stream, value k
// at bit k*bits (for 5 bits that is MLX's 8-values-in-5-bytes packing).
void pack_codes(const uint8_t* codes, int64_t n, int bits, uint32_t* out) {
  uint64_t acc = 0;
  int filled = 0;
  for (int64_t i = 0; i < n; ++i) {
    acc |= static_cast<uint64_t>(codes[i]) << filled;
    filled += bits;
    if (filled >= 32) {
      *out++ = static_cast<uint32_t>(acc);
      acc >>= 32;
      filled -= 32;
    }
  }
}

// One ggml block of an affine type -> its codes and per-32 scales/biases, with scale * code + bias
// equal to ggml-quants.c's dequantized value (Q4_K/Q5_K: d * sc and -(dmin * m) computed in fp32,
// as dequantize_row_q4_K does; Q5_0's bias -16 * d, Q4_0's -8 * d and Q8_0's -128 * d are exact).
void affine_block(uint32_t type, const uint8_t* b, uint8_t* codes, float* scales, float* biases) {
  const auto f16 = k::half_at;
  switch (type) {
    case k::kGgmlQ4_0:
    case k::kGgmlQ4_1: {
      const bool min = type == k::kGgmlQ4_1;
      const uint8_t* qs = b + (min ? 4 : 2);
      scales[0] = f16(b);
      biases[0] = min ? f16(b + 2) : -8.0f * scales[0];
      for (int j = 0; j < 16; ++j) {
        codes[j] = qs[j] & 0xF;
        codes[j + 16] = qs[j] >> 4;
      }
      return;
    }
    case k::kGgmlQ5_0:
    case k::kGgmlQ5_1: {
      const bool min = type == k::kGgmlQ5_1;
      const uint8_t* p = b + (min ? 4 : 2);
      uint32_t qh;
      std::memcpy(&qh, p, 4);
      scales[0] = f16(b);
      biases[0] = min ? f16(b + 2) : -16.0f * scales[0];
      for (int j = 0; j < 16; ++j) {
        codes[j] = (p[4 + j] & 0xF) | (((qh >> j) << 4) & 0x10);
        codes[j + 16] = (p[4 + j] >> 4) | ((qh >> (j + 12)) & 0x10);
      }
      return;
    }
    case k::kGgmlQ8_0:
      scales[0] = f16(b);
      biases[0] = -128.0f * scales[0];
      for (int j = 0; j < 32; ++j) codes[j] = b[2 + j] ^ 0x80;  // int8 -> int8 + 128
      return;
    case k::kGgmlQ4_K:
    case k::kGgmlQ5_K: {
      const bool five = type == k::kGgmlQ5_K;
      const float d = f16(b), dmin = f16(b + 2);
      const uint8_t* sc = b + 4;
      const uint8_t* qh = b + 16;
      const uint8_t* ql = b + (five ? 48 : 16);
      for (int j = 0; j < 8; ++j) {
        uint8_t s, m;
        k::scale_min_k4(j, sc, s, m);
        scales[j] = d * s;
        biases[j] = -(dmin * m);
      }
      // 64 values per 32 bytes of ql: low nibbles first, then high; Q5_K's fifth bits in qh.
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) {
          const uint8_t u1 = 1 << (2 * c), u2 = 2 << (2 * c);
          codes[64 * c + l] = (ql[32 * c + l] & 0xF) | (five && (qh[l] & u1) ? 16 : 0);
          codes[64 * c + 32 + l] = (ql[32 * c + l] >> 4) | (five && (qh[l] & u2) ? 16 : 0);
        }
      return;
    }
  }
}

void add_tensor(std::unordered_map<std::string, mx::array>& out, const std::string& name, mx::array a) {
  if (!out.emplace(name, std::move(a)).second) fail("gguf", "duplicate tensor name '" + name + "'");
}

// Where our fused kernel multiplies a format as stored (an AVX-512 CPU as the default device), affine
// formats stay blocks too: the file's bytes are the resident bytes (the affine triples' fp32 scales
// and biases add 1.2-1.3x), and the products are as fast. Elsewhere (GPU, other CPUs) MLX's affine
// quantized matmul is the fast path (gather_qmm for stacked experts).
bool keep_as_blocks(const Info& t) {
  return t.info->storage == Storage::blocks ||
         (t.info->storage == Storage::affine && mx::default_device() == mx::Device::cpu &&
          k::ggml_simd_supported(t.type));
}

// MXFP4 (gpt-oss's experts): ggml's block is an e8m0 exponent then 16 bytes holding the 32 e2m1 codes,
// values 0-15 in the low nibbles and 16-31 in the high ones, each value kvalues_mxfp4[code] (e2m1 doubled)
// times 2^(e - 128), i.e. e2m1 times 2^(e - 127): MLX's mxfp4 with the codes re-paired (value 2k in the low
// nibble of byte k, 2k + 1 in the high one) and the exponent as its scale. Stacked experts only.
void load_mxfp4(Walker& w, const Info& t, std::unordered_map<std::string, mx::array>& out) {
  if (t.shape.size() != 3)
    fail("gguf", "tensor '" + t.name + "' is MXFP4, which mlxgp loads for stacked experts ([experts, out, in]) only");
  const int64_t K = t.shape.back(), rows = static_cast<int64_t>(t.numel / K), blocks = K / 32;
  mx::Shape wshape = t.shape, sshape = t.shape;
  wshape.back() = static_cast<int>(K / 8);
  sshape.back() = static_cast<int>(blocks);
  mx::array qw(mx::allocator::malloc(rows * K / 2), wshape, mx::uint32);
  mx::array scales(mx::allocator::malloc(rows * blocks), sshape, mx::uint8);
  auto* codes = reinterpret_cast<uint8_t*>(qw.data<uint32_t>());
  uint8_t* exps = scales.data<uint8_t>();
  std::vector<uint8_t> row(blocks * 17);
  for (int64_t r = 0; r < rows; ++r) {
    w.bytes(row.data(), row.size());
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* blk = row.data() + b * 17;
      exps[r * blocks + b] = blk[0];
      auto code = [&](int i) { return i < 16 ? blk[1 + i] & 0x0F : blk[1 + i - 16] >> 4; };
      uint8_t* dst = codes + (r * blocks + b) * 16;
      for (int k = 0; k < 16; ++k) dst[k] = static_cast<uint8_t>(code(2 * k) | (code(2 * k + 1) << 4));
    }
  }
  auto base = t.name.ends_with(".weight") ? t.name.substr(0, t.name.size() - 7) : t.name;
  add_tensor(out, t.name, std::move(qw));
  add_tensor(out, base + ".scales", std::move(scales));
}

void load_tensor(Walker& w, const Info& t, uint64_t data_start, std::unordered_map<std::string, mx::array>& out) {
  w.seek(data_start + t.offset);
  const TypeInfo& ti = *t.info;
  const bool blocks = keep_as_blocks(t);
  if (ti.storage == Storage::dense || blocks) {
    mx::Shape shape = t.shape;
    mx::Dtype dtype = ti.dtype;
    if (blocks) {
      shape.back() = static_cast<int>(t.bytes / (t.numel / t.shape.back()));
      dtype = mx::uint8;
    }
    mx::array a(mx::allocator::malloc(t.bytes), shape, dtype);
    w.bytes(a.data<uint8_t>(), t.bytes);
    add_tensor(out, t.name, std::move(a));
    if (blocks) {
      auto base = t.name.ends_with(".weight") ? t.name.substr(0, t.name.size() - 7) : t.name;
      add_tensor(out, base + ".ggml_type", mx::array(t.type, mx::uint32));
    }
    return;
  }
  if (ti.storage == Storage::mxfp4) return load_mxfp4(w, t, out);
  // Affine: codes packed into uint32 words, float32 scales/biases per 32 values.
  const k::GgmlBlock blk = k::ggml_block(t.type);
  const int64_t K = t.shape.back(), rows = static_cast<int64_t>(t.numel / K), groups = K / 32;
  const int bits = ti.bits;
  mx::Shape wshape = t.shape, sshape = t.shape;
  wshape.back() = static_cast<int>(K * bits / 32);
  sshape.back() = static_cast<int>(groups);
  mx::array qw(mx::allocator::malloc(rows * K * bits / 8), wshape, mx::uint32);
  mx::array scales(mx::allocator::malloc(rows * groups * 4), sshape, mx::float32);
  mx::array biases(mx::allocator::malloc(rows * groups * 4), sshape, mx::float32);
  const uint64_t row_bytes = K / blk.elements * blk.bytes;
  std::vector<uint8_t> row(row_bytes), codes(K);
  for (int64_t r = 0; r < rows; ++r) {
    w.bytes(row.data(), row_bytes);
    float* s = scales.data<float>() + r * groups;
    float* b = biases.data<float>() + r * groups;
    for (int64_t i = 0; i < K / blk.elements; ++i) {
      const int64_t g = i * blk.elements / 32;
      affine_block(t.type, row.data() + i * blk.bytes, codes.data() + i * blk.elements, s + g, b + g);
    }
    pack_codes(codes.data(), K, bits, qw.data<uint32_t>() + r * (K * bits / 32));
  }
  auto base = t.name.ends_with(".weight") ? t.name.substr(0, t.name.size() - 7) : t.name;
  add_tensor(out, t.name, std::move(qw));
  add_tensor(out, base + ".scales", std::move(scales));
  add_tensor(out, base + ".biases", std::move(biases));
}

// n_tensors: set to the number of tensors the file lists.
mx::GGUFLoad read_gguf(const std::string& path, bool with_tensors, uint64_t* n_tensors_out = nullptr) {
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) fail("load", "cannot read " + path);
  Walker w(path, size);
  if (size < 4) w.bad("file is truncated (no GGUF magic)");
  if (w.read<uint32_t>() != 0x46554747u) w.bad("not a GGUF file (bad magic)");
  auto version = w.read<uint32_t>();
  if (version != 2 && version != 3) w.bad("unsupported GGUF version " + std::to_string(version) + " (supported: 2, 3)");
  auto n_tensors = w.read<uint64_t>();
  auto n_kv = w.read<uint64_t>();
  // Each entry takes at least 8 bytes, so larger counts cannot be genuine.
  if (n_tensors > size / 8 || n_kv > size / 8) w.bad("tensor/metadata counts exceed the file size (corrupt)");
  uint64_t alignment = 32;
  std::unordered_map<std::string, mx::GGUFMetaData> meta;
  for (uint64_t i = 0; i < n_kv; ++i) {
    auto key = w.string();
    auto type = w.read<uint32_t>();
    auto v = read_value(w, type);
    if (key == "general.alignment") {
      auto* a = std::get_if<mx::array>(&v);
      const uint64_t al = type == 4 && a ? a->item<uint32_t>() : 0;
      if (al == 0 || (al & (al - 1)) != 0) w.bad("general.alignment must be a power of two");
      alignment = al;
    }
    meta.insert_or_assign(key, std::move(v));
  }
  if (n_tensors_out) *n_tensors_out = n_tensors;
  std::vector<Info> infos;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    Info t;
    t.name = w.string();
    auto n_dims = w.read<uint32_t>();
    if (n_dims == 0 || n_dims > 4) w.bad("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dims");
    for (uint32_t d = 0; d < n_dims; ++d) {
      auto ne = w.read<uint64_t>();
      if (ne == 0 || ne > (1ULL << 31) - 1 || (t.numel *= ne) > (1ULL << 40))
        w.bad("tensor '" + t.name + "' has an invalid shape");
      t.shape.insert(t.shape.begin(), static_cast<int>(ne));
    }
    t.type = w.read<uint32_t>();
    auto it = kTypes.find(t.type);
    if (it == kTypes.end()) w.bad("tensor '" + t.name + "' has unknown ggml type " + std::to_string(t.type));
    t.info = &it->second;
    if (t.info->storage == Storage::refused)
      w.bad("tensor '" + t.name + "' has type " + t.info->name + ", which mlxgp does not load");
    const k::GgmlBlock blk = t.info->storage == Storage::dense ? k::GgmlBlock{1, static_cast<int>(t.info->dtype.size())}
                             : t.info->storage == Storage::mxfp4 ? k::GgmlBlock{32, 17}
                                                                 : k::ggml_block(t.type);
    if (t.shape.back() % blk.elements != 0)
      w.bad("tensor '" + t.name + "' row size is not a multiple of its block size");
    t.bytes = t.numel / blk.elements * blk.bytes;
    t.offset = w.read<uint64_t>();
    infos.push_back(std::move(t));
  }
  const uint64_t data_start = (w.pos() + alignment - 1) / alignment * alignment;
  if (data_start > size) w.bad("file is truncated (no tensor data)");
  // Every tensor's data must lie inside the file before any is read, start on the file's alignment, and
  // overlap no other tensor's (ggml's gguf reader goes further and wants them packed in order).
  for (auto& t : infos) {
    if (t.offset > size - data_start || t.bytes > size - data_start - t.offset)
      w.bad("file is truncated: tensor '" + t.name + "' data ends past the end of the file");
    if (t.offset % alignment != 0)
      w.bad("tensor '" + t.name + "' data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
            std::to_string(alignment));
  }
  std::vector<const Info*> by_offset;
  for (auto& t : infos) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i - 1]->offset + by_offset[i - 1]->bytes > by_offset[i]->offset)
      w.bad("tensors '" + by_offset[i - 1]->name + "' and '" + by_offset[i]->name + "' overlap in the file");
  std::unordered_map<std::string, mx::array> tensors;
  if (with_tensors)
    for (auto& t : infos) load_tensor(w, t, data_start, tensors);
  return {std::move(tensors), std::move(meta)};
}

// split.count / split.no as gguf-split writes them; a part other than the first is refused, as llama.cpp
// refuses it ("model must be loaded with the first split").
int split_count(const std::string& path, const GgufMeta& meta) {
  const int count = gguf_count_or(meta, "split.count", 1);
  if (count > 1 && gguf_count_or(meta, "split.no", 0) != 0)
    fail("gguf", path + " is part " + std::to_string(gguf_count(meta, "split.no") + 1) + " of a split GGUF of " +
                     std::to_string(count) + ": load its first part");
  return count;
}

}  // namespace

mx::GGUFLoad load_gguf_checked(const std::string& path) {
  uint64_t listed = 0;
  auto out = read_gguf(path, true, &listed);
  const int count = split_count(path, out.second);
  if (count <= 1) return out;
  // llama.cpp's llama_model_loader: the parts are <prefix>-%05d-of-%05d.gguf beside the first (llama_split_prefix
  // / llama_split_path), each with its split.no; metadata comes from the first part alone; tensor names must
  // not repeat across parts, and split.tensors.count must equal the tensors found.
  char postfix[40];
  std::snprintf(postfix, sizeof postfix, "-%05d-of-%05d.gguf", 1, count);
  if (path.size() <= std::strlen(postfix) || !path.ends_with(postfix))
    fail("gguf",
         path + " has split.count " + std::to_string(count) + " but its name does not end in '" + postfix + "'");
  const std::string prefix = path.substr(0, path.size() - std::strlen(postfix));
  for (int i = 1; i < count; ++i) {
    std::snprintf(postfix, sizeof postfix, "-%05d-of-%05d.gguf", i + 1, count);
    const std::string part = prefix + postfix;
    if (!std::filesystem::exists(part))
      fail("gguf",
           "split GGUF part " + std::to_string(i + 1) + " of " + std::to_string(count) + " is missing: " + part);
    uint64_t n = 0;
    auto [tensors, meta] = read_gguf(part, true, &n);
    listed += n;
    if (gguf_count_or(meta, "split.no", -1) != i)
      fail("gguf", part + ": metadata 'split.no' is not " + std::to_string(i));
    for (auto& [name, a] : tensors)
      if (!out.first.emplace(name, std::move(a)).second)
        fail("gguf", part + ": tensor '" + name + "' is also in an earlier part");
  }
  const int expected = gguf_count(out.second, "split.tensors.count");
  if (static_cast<uint64_t>(expected) != listed)
    fail("gguf", path + ": metadata 'split.tensors.count' is " + std::to_string(expected) + " but the " +
                     std::to_string(count) + " parts hold " + std::to_string(listed) + " tensors");
  return out;
}

std::unordered_map<std::string, mx::GGUFMetaData> load_gguf_metadata(const std::string& path) {
  auto meta = read_gguf(path, false).second;
  split_count(path, meta);
  return meta;
}

}  // namespace mlxgp::io
