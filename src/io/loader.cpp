// load(): HF folder (config.json + safetensors, sharded or not), MLX quantized folder, or GGUF file
// -> Model + Tokenizer. Dtype handling happens here so models only ever see one weight layout.
#include "mlxgp/loader.h"

#include <algorithm>
#include <functional>
#include <filesystem>
#include <set>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "io/checkpoint_files.h"
#include "io/gguf_model.h"
#include "io/quantization_modules.h"
#include "kernels/ggml_blocks.h"
#include "kernels/ggml_q8.h"
#include "kernels/kernels.h"
#include "mlxgp/error.h"
#include "mlxgp/paths.h"
#include "models/layers.h"
#include "models/model_names.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace fs = std::filesystem;

mx::Dtype parse_dtype(const std::string& name) {
  if (name == "float32") return mx::float32;
  if (name == "bfloat16") return mx::bfloat16;
  if (name == "float16") return mx::float16;
  fail("load", "unknown dtype '" + name + "' (supported: float32, bfloat16, float16)");
}

namespace {

bool is_float(mx::Dtype t) { return mx::issubdtype(t, mx::floating); }

// Applies LoadOptions::dtype. With a dtype, quantized triples are dequantized to dense weights and
// every float tensor is cast. Without one, quantized weights stay packed and float tensors (scales
// included) take the dtype of the final norm, so the graph runs in a single dtype (GGUF stores
// fp16 scales next to fp32 norms).
// group_size_of: the group size of the quantized tensor with this base name (model names). `gguf`: a file without a
// norm weight (olmo's) computes in float32, as llama.cpp (its F16 weights widened, not its activations narrowed).
void apply_dtype(WeightMap& w, std::optional<mx::Dtype> dtype,
                 const std::function<int(const std::string&)>& group_size_of, bool gguf = false) {
  std::optional<mx::Dtype> target = dtype;
  if (!target) {
    const auto* norm = gguf ? final_norm_weight(w) : activation_dtype_weight(w);
    if (norm && is_float(norm->dtype())) target = norm->dtype();
    if (!norm && gguf) target = mx::float32;
  }
  if (!target) return;
  std::vector<std::string> quantized;
  for (auto& [k, v] : w)
    if (k.size() > 7 && k.ends_with(".scales")) quantized.push_back(k.substr(0, k.size() - 7));
  if (dtype) {
    // llama.cpp blocks kept as stored (GGUF) are expanded as well: a float dtype means float weights.
    std::vector<std::string> tagged;
    for (auto& [k, v] : w)
      if (k.ends_with(".ggml_type")) tagged.push_back(k.substr(0, k.size() - 10));
    for (auto& base : tagged) {
      auto wi = w.find(base + ".weight");
      const auto type = mx::astype(w.at(base + ".ggml_type"), mx::uint32).item<uint32_t>();
      const auto block = kernels::ggml_block(type);
      // 2-D projections, or 3-D stacked experts.
      if (wi == w.end() || wi->second.ndim() < 2 || wi->second.ndim() > 3 || block.bytes == 0 ||
          wi->second.shape(-1) % block.bytes != 0)
        fail("model", "llama.cpp block tensor '" + base + ".weight' does not hold whole blocks");
      const int in = wi->second.shape(-1) / block.bytes * block.elements;
      wi->second = mx::astype(kernels::ggml_dequantize(wi->second, type, in), *dtype);
      w.erase(base + ".ggml_type");
    }
    for (auto& base : quantized) {
      auto wi = w.find(base + ".weight");
      auto bi = w.find(base + ".biases");
      const auto& sc = w.at(base + ".scales");
      if (sc.dtype() == mx::uint8 && wi != w.end() && bi == w.end()) {
        // A microscaling mode (uint8 scales, no biases; gpt-oss's experts are mxfp4).
        const auto [bits, group_size] = layers::microscaling_bits_group(wi->second.shape(-1), sc.shape(-1));
        const auto mode = layers::microscaling_mode(w, base, bits, group_size);
        wi->second = mx::dequantize(wi->second, sc, std::nullopt, group_size, bits, mode, std::nullopt, *dtype);
        w.erase(base + ".scales");
        continue;
      }
      // 2-D projections, or 3-D stacked experts ([experts, out, packed in]).
      if (wi == w.end() || bi == w.end() || wi->second.ndim() < 2 || wi->second.ndim() > 3 ||
          sc.ndim() != wi->second.ndim() || sc.shape(-1) == 0)
        fail("model", "quantized tensor '" + base + ".weight' is incomplete (needs weight, scales, biases)");
      const int group_size = group_size_of(base), in = sc.shape(-1) * group_size;
      if ((wi->second.shape(-1) * 32) % in != 0)
        fail("model", "quantized tensor '" + base + ".weight' has inconsistent packed shape");
      const int bits = wi->second.shape(-1) * 32 / in;
      auto dense = mx::dequantize(wi->second, mx::astype(sc, mx::float32), mx::astype(bi->second, mx::float32),
                                  group_size, bits);
      wi->second = mx::astype(dense, *dtype);
      w.erase(base + ".scales");
      w.erase(base + ".biases");
    }
  }
  // Scales/biases too: keeping GGUF's fp16 scales would halve their bytes, but measured on the
  // CPU kernel the per-group widening costs more than the bandwidth saved (LM head 2.4 vs 1.8 ms).
  for (auto& [k, v] : w)
    if (is_float(v.dtype()) && v.dtype() != *target && !is_fp32_router_tensor(w, k)) v = mx::astype(v, *target);
}

WeightMap load_folder_weights(const fs::path& dir) {
  std::vector<fs::path> files;
  const auto index = dir / "model.safetensors.index.json";
  if (fs::exists(index)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(io::read_text_file(index.string()));
    } catch (const nlohmann::json::exception& e) {
      fail("safetensors", index.string() + ": malformed index JSON");
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail("safetensors", index.string() + ": missing 'weight_map'");
    std::set<std::string> shards;
    for (auto& [k, v] : j["weight_map"].items()) {
      if (!v.is_string()) fail("safetensors", index.string() + ": weight_map entries must be file names");
      shards.insert(v.get<std::string>());
    }
    for (auto& s : shards) {
      auto p = dir / s;
      if (!fs::exists(p)) fail("safetensors", "shard " + p.string() + " listed in the index is missing");
      files.push_back(p);
    }
  } else if (fs::exists(dir / "model.safetensors")) {
    files.push_back(dir / "model.safetensors");
  } else {
    for (auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") files.push_back(e.path());
    std::sort(files.begin(), files.end());
  }
  if (files.empty()) fail("load", "folder " + dir.string() + " has no model.safetensors");
  WeightMap w;
  for (auto& f : files)
    for (auto& [k, v] : io::load_safetensors_checked(f.string())) w.insert_or_assign(k, v);
  return w;
}

// tokenizer.json (+ tokenizer_config.json for the chat template and special tokens) when present.
std::shared_ptr<Tokenizer> folder_tokenizer(const fs::path& dir) {
  if (!fs::exists(dir / "tokenizer.json")) return nullptr;
  auto tc = dir / "tokenizer_config.json";
  return Tokenizer::from_files((dir / "tokenizer.json").string(), fs::exists(tc) ? tc.string() : "");
}

// Resolves "default" and checks the path exists; returns the path and whether it is a folder.
std::pair<std::string, bool> resolve_existing(const std::string& path) {
  const std::string resolved = resolve_model_path(path);
  std::error_code ec;
  auto status = fs::status(resolved, ec);
  if (ec || !fs::exists(status)) fail("load", "no such file or folder: " + resolved);
  if (!fs::is_directory(status) && fs::path(resolved).extension() != ".gguf")
    fail("load", resolved + " is neither a model folder nor a .gguf file");
  return {resolved, fs::is_directory(status)};
}

LoadedModel load_folder(const fs::path& dir, const LoadOptions& options) {
  const auto cfg_path = dir / "config.json";
  if (!fs::exists(cfg_path)) fail("load", "folder " + dir.string() + " has no config.json");
  LoadedModel out;
  const std::string config_text = io::read_text_file(cfg_path.string());
  ModelConfig config = parse_model_config(config_text);
  // Fail on an unknown architecture before reading gigabytes of weights.
  auto types = supported_model_types();
  if (std::find(types.begin(), types.end(), config.model_type) == types.end()) create_model(config, {});
  // In the model's names first: dtype handling reads the final norm's dtype by name.
  WeightMap weights = to_model_names(config, load_folder_weights(dir));
  // Each quantized tensor's group size: its module's own entry in "quantization" where it has one (mlx-lm's
  // per-module entries, keyed by checkpoint names: renamed as the weights are), else the top level's.
  std::unordered_map<std::string, int> module_groups;
  if (config.quantization) {
    WeightMap probe;
    for (auto& [path, q] : io::quantization_modules(config_text))
      probe.insert_or_assign(path + ".weight", mx::array(q.group_size));
    for (auto& [name, g] : to_model_names(config, std::move(probe)))
      module_groups[name.substr(0, name.size() - 7)] = g.item<int>();
  }
  const int top_group = config.quantization ? config.quantization->group_size : 64;
  apply_dtype(weights, options.dtype, [&](const std::string& base) {
    auto it = module_groups.find(base);
    return it != module_groups.end() ? it->second : top_group;
  });
  if (options.dtype) config.quantization.reset();
  out.model = create_model(config, std::move(weights));
  out.tokenizer = folder_tokenizer(dir);
  if (fs::exists(dir / "generation_config.json"))
    out.generation_config_json = io::read_text_file((dir / "generation_config.json").string());
  return out;
}

// LoadOptions::int8_activations: marks every Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / IQ4_NL / Q4_K / Q5_K / Q6_K / IQ4_XS
// block tensor
// (`<module>.int8_activations`, read by layers::take_ggml_blocks); refused when there is none or the machine cannot run
// the kernels.
void mark_int8_activations(WeightMap& weights, const fs::path& file) {
  if (mx::default_device() != mx::Device::cpu)
    fail("load", "int8 activations run on the CPU only; the default device is not the CPU");
  std::vector<std::string> marks;
  for (auto& [name, a] : weights) {
    if (!name.ends_with(".ggml_type")) continue;
    const auto t = mx::astype(a, mx::uint32).item<uint32_t>();
    if (!kernels::ggml_q8_type(t)) continue;
    if (!kernels::ggml_q8_supported(t)) fail("load", kernels::ggml_q8_unsupported_reason(t));
    marks.push_back(name.substr(0, name.size() - 10) + ".int8_activations");
  }
  // (On a CPU without the kernels the loader repacks those types instead of keeping them as blocks: that is the
  // reason to name then, not the file.)
  if (marks.empty() && !kernels::ggml_q8_supported(kernels::kGgmlQ4_0))
    fail("load", kernels::ggml_q8_unsupported_reason(kernels::kGgmlQ4_0));
  if (marks.empty())
    fail("load", std::string("int8 activations need llama.cpp ") + kernels::kGgmlQ8Types + " tensors; " +
                     file.filename().string() + " has none kept as blocks");
  for (auto& m : marks) weights.insert_or_assign(m, mx::array(true));
}

LoadedModel load_gguf(const fs::path& file, const LoadOptions& options) {
  auto [tensors, meta] = io::load_gguf_checked(file.string());
  ModelConfig config = io::gguf_config(meta, tensors);
  WeightMap weights = io::gguf_weights(config, std::move(tensors));
  apply_dtype(weights, options.dtype, [](const std::string&) { return 32; }, true);  // affine GGUF types: groups of 32
  if (options.int8_activations) mark_int8_activations(weights, file);
  LoadedModel out;
  out.model = create_model(config, std::move(weights));
  // A GGUF without vocabulary metadata loads like a folder without tokenizer files.
  if (meta.count("tokenizer.ggml.model")) out.tokenizer = Tokenizer::from_gguf(meta);
  return out;
}

}  // namespace

LoadedModel load(const std::string& path, const LoadOptions& options) {
  auto [resolved, is_folder] = resolve_existing(path);
  if (options.int8_activations && options.dtype)
    fail("load", "int8 activations and a dtype exclude each other: the dtype dequantizes the blocks they apply to");
  if (options.int8_activations && is_folder)
    fail("load", std::string("int8 activations apply to a GGUF's ") + kernels::kGgmlQ8Types + " tensors; " + resolved +
                     " is a folder");
  LoadedModel out = is_folder ? load_folder(resolved, options) : load_gguf(resolved, options);
  // Materialise the weights now (MLX loads lazily): read errors surface here rather than in the
  // first forward, and time-to-first-token measures compute, not disk reads.
  std::vector<mx::array> params;
  for (auto& [k, v] : out.model->parameters()) params.push_back(v);
  mx::eval(params);
  out.source = resolved;
  return out;
}

std::shared_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  auto [resolved, is_folder] = resolve_existing(path);
  if (is_folder) {
    auto tok = folder_tokenizer(resolved);
    if (!tok) fail("tokenizer", "no tokenizer.json in " + resolved);
    return tok;
  }
  auto meta = io::load_gguf_metadata(resolved);
  if (!meta.count("tokenizer.ggml.model")) fail("tokenizer", resolved + " has no tokenizer metadata");
  return Tokenizer::from_gguf(meta);
}

}  // namespace mlxgp
