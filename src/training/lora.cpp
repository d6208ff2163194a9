// LoRA adapters as extra tensors of the model (`<linear>.lora_A.weight`, `.lora_B.weight`,
// `.lora_scale`), read by layers::Linear.
#include "mlxgp/lora.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "kernels/ggml_blocks.h"
#include "models/layers.h"
#include "mlxgp/error.h"
#include "mlxgp/safetensors_io.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const std::string kA = ".lora_A.weight", kB = ".lora_B.weight", kScale = ".lora_scale";

// "model.layers.3" of "model.layers.3.mlp.gate_proj": the name up to its first numeric part.
std::string layer_of(const std::string& prefix) {
  size_t start = 0;
  while (start < prefix.size()) {
    size_t end = prefix.find('.', start);
    if (end == std::string::npos) end = prefix.size();
    if (end > start &&
        std::all_of(prefix.begin() + start, prefix.begin() + end, [](char ch) { return ch >= '0' && ch <= '9'; }))
      return prefix.substr(0, end);
    start = end + 1;
  }
  return "";
}

}  // namespace

std::vector<std::string> lora_parameter_names(Model& model) {
  std::vector<std::string> out;
  for (auto& [name, a] : model.parameters())
    if (ends_with(name, kA) || ends_with(name, kB)) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> add_lora(Model& model, const LoraConfig& c) {
  if (c.rank < 1) fail("lora", "rank must be >= 1");
  if (!(c.alpha > 0) || !std::isfinite(c.alpha)) fail("lora", "alpha must be a positive number");
  if (!(c.dropout >= 0 && c.dropout < 1)) fail("lora", "dropout must be in [0, 1)");
  if (c.target_modules.empty()) fail("lora", "no target modules");
  if (!lora_parameter_names(model).empty()) fail("lora", "the model already has LoRA adapters");
  auto& params = model.parameters();
  std::vector<std::string> prefixes;
  // Per target: the layers where it names a linear, and a stacked-expert weight it names (and where).
  std::map<std::string, std::set<std::string>> linear_layers;
  std::map<std::string, std::map<std::string, std::string>> expert_layers;
  for (auto& [name, w] : params) {
    if (!ends_with(name, ".weight") || (w.ndim() != 2 && w.ndim() != 3)) continue;
    auto prefix = name.substr(0, name.size() - 7);
    auto leaf = prefix.substr(prefix.rfind('.') + 1);
    for (auto& t : c.target_modules) {
      if (leaf != t) continue;
      if (w.ndim() == 3) {
        expert_layers[t].emplace(layer_of(prefix), prefix);
        continue;
      }
      prefixes.push_back(prefix);
      linear_layers[t].insert(layer_of(prefix));
    }
  }
  // Stacked MoE experts ([experts, out, in]) take no adapter: a target that reaches only them in a layer
  // would train nothing there, so it is refused rather than ignored (qwen2_moe's shared expert, a plain
  // linear of the same name, is adapted as peft adapts it).
  for (auto& [t, layers] : expert_layers)
    for (auto& [layer, prefix] : layers)
      if (!linear_layers[t].count(layer))
        fail("lora", "target '" + t + "' names the stacked MoE experts '" + prefix +
                         "', which LoRA does not adapt (target the attention or dense projections)");
  if (prefixes.empty()) {
    // Name what there is: architectures spell their projections differently (gpt_neox: query_key_value, phi: dense).
    std::set<std::string> leaves;
    for (auto& [name, w] : params)
      if (ends_with(name, ".weight") && w.ndim() == 2 && name.find(".layers.") != std::string::npos) {
        auto prefix = name.substr(0, name.size() - 7), leaf = prefix.substr(prefix.rfind('.') + 1);
        if (leaf.find("norm") == std::string::npos) leaves.insert(leaf);  // (cohere's per-head norms are 2-D)
      }
    std::string wanted, have;
    for (auto& t : c.target_modules) wanted += (wanted.empty() ? "" : ", ") + t;
    for (auto& l : leaves) have += (have.empty() ? "" : ", ") + l;
    fail("lora", "no linear layer matches the target modules (" + wanted + "); this model's are: " + have);
  }
  std::sort(prefixes.begin(), prefixes.end());
  WeightMap added;
  std::vector<std::string> names;
  uint64_t n = 0;
  for (auto& prefix : prefixes) {
    const auto& w = params.at(prefix + ".weight");
    // Quantized weights are packed: the input size comes from the scales' groups.
    int out = w.shape(0), in = w.shape(1);
    if (auto s = params.find(prefix + ".scales"); s != params.end()) {
      // weight [out, in * bits / 32] uint32 and scales [out, in / group]: in = 32 * cols / bits, with
      // bits inferred as in layers::Linear::load (the group size is 32, 64 or 128).
      // The shapes alone can fit two widths (4 bits in groups of 64 and 2 bits in groups of 128 both give
      // 72 words and 9 groups for 576 inputs): the checkpoint's own quantization settings are tried first.
      const int cols = w.shape(1), groups = s->second.shape(1);
      std::vector<int> bits_order = {2, 3, 4, 5, 6, 8}, group_order = {32, 64, 128};
      if (const auto& q = model.config().quantization) {
        std::erase(bits_order, q->bits);
        bits_order.insert(bits_order.begin(), q->bits);
        std::erase(group_order, q->group_size);
        group_order.insert(group_order.begin(), q->group_size);
      }
      in = 0;
      if (s->second.dtype() == mx::uint8) {  // a microscaling mode: one bits / group size pair each
        in = groups * layers::microscaling_bits_group(cols, groups).second;
      } else {
        // Without the checkpoint's settings (a GGUF file's blocks repacked at load as 4-bit groups of 32, which
        // 2-bit groups of 64 fit too), a width that is one of the model's own sizes is taken first.
        std::vector<int> fits;
        for (int bits : bits_order)
          for (int group : group_order)
            if ((cols * 32) % bits == 0 && (cols * 32) / bits == groups * group) fits.push_back(groups * group);
        const auto& mc = model.config();
        const int sizes[] = {mc.hidden_size,
                             mc.intermediate_size,
                             mc.moe_intermediate_size,
                             mc.shared_expert_intermediate_size,
                             mc.num_attention_heads * mc.head_dim,
                             mc.num_attention_heads * mc.v_head_dim,
                             mc.q_lora_rank,
                             mc.kv_lora_rank};
        const bool known = mc.quantization.has_value();
        for (int f : fits)
          if (in == 0 && (known || std::find(std::begin(sizes), std::end(sizes), f) != std::end(sizes))) in = f;
        if (in == 0 && !fits.empty()) in = fits.front();
      }
      if (in == 0) fail("lora", "cannot infer the input size of quantized '" + prefix + "'");
    } else if (auto t = params.find(prefix + ".ggml_type"); t != params.end()) {
      // llama.cpp blocks as stored (GGUF): weight [out, row bytes] uint8.
      const auto block = kernels::ggml_block(mx::astype(t->second, mx::uint32).item<uint32_t>());
      if (block.bytes == 0 || w.shape(1) % block.bytes != 0)
        fail("lora", "cannot infer the input size of quantized '" + prefix + "'");
      in = w.shape(1) / block.bytes * block.elements;
    }
    // peft: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0.
    const float bound = 1.0f / std::sqrt(static_cast<float>(in));
    added.insert_or_assign(prefix + kA, mx::random::uniform(-bound, bound, {c.rank, in}, mx::float32,
                                                            mx::random::key(c.seed * 7919 + ++n)));
    added.insert_or_assign(prefix + kB, mx::zeros({out, c.rank}, mx::float32));
    added.insert_or_assign(prefix + kScale, mx::array(static_cast<float>(c.alpha / c.rank)));
    names.push_back(prefix + kA);
    names.push_back(prefix + kB);
  }
  model.set_parameters(added, /*allow_new=*/true);
  model.lora_dropout() = {c.dropout, c.seed};
  return names;
}

void merge_lora(Model& model) {
  auto names = lora_parameter_names(model);
  if (names.empty()) fail("lora", "the model has no LoRA adapters to merge");
  auto& params = model.parameters();
  WeightMap merged;
  for (auto& name : names) {
    if (!ends_with(name, kA)) continue;
    auto prefix = name.substr(0, name.size() - kA.size());
    if (params.count(prefix + ".scales") || params.count(prefix + ".ggml_type"))
      fail("lora", "cannot merge into quantized '" + prefix + "': load the base model with a float dtype");
    const auto& w = params.at(prefix + ".weight");
    auto delta = mx::multiply(mx::matmul(params.at(prefix + kB), params.at(name)), params.at(prefix + kScale));
    merged.insert_or_assign(prefix + ".weight", mx::astype(mx::add(mx::astype(w, mx::float32), delta), w.dtype()));
  }
  // Rebuild without the adapter tensors: start from the parameters minus adapters, then apply merges.
  WeightMap base;
  for (auto& [k, v] : params)
    if (!ends_with(k, kA) && !ends_with(k, kB) && !ends_with(k, kScale)) base.insert_or_assign(k, v);
  for (auto& [k, v] : merged) base.insert_or_assign(k, v);
  // set_parameters keeps existing names; replacing the whole map drops the adapters.
  model.parameters() = base;
  model.set_parameters({});
  model.lora_dropout() = {};
}

void save_lora(Model& model, const std::string& path, const LoraConfig& c) {
  std::unordered_map<std::string, mx::array> tensors;
  for (auto& [k, v] : model.parameters())
    if (ends_with(k, kA) || ends_with(k, kB) || ends_with(k, kScale)) tensors.emplace(k, v);
  if (tensors.empty()) fail("lora", "the model has no LoRA adapters to save");
  nlohmann::json meta = {
      {"rank", c.rank}, {"alpha", c.alpha}, {"dropout", c.dropout}, {"target_modules", c.target_modules}};
  save_safetensors_atomic(path, tensors, {{"format", "mlxgp-lora"}, {"lora_config", meta.dump()}}, "lora");
}

LoraConfig load_lora(Model& model, const std::string& path) {
  auto contents = load_safetensors_file(path);
  auto it = contents.metadata.find("lora_config");
  if (contents.metadata["format"] != "mlxgp-lora" || it == contents.metadata.end())
    fail("lora", path + " is not an mlxgp LoRA adapter file");
  if (!lora_parameter_names(model).empty()) fail("lora", "the model already has LoRA adapters");
  LoraConfig c;
  try {
    auto j = nlohmann::json::parse(it->second);
    c.rank = j.at("rank");
    c.alpha = j.at("alpha");
    c.dropout = j.at("dropout");
    c.target_modules = j.at("target_modules").get<std::vector<std::string>>();
  } catch (const std::exception& e) {
    fail("lora", path + ": malformed adapter metadata");
  }
  // save_lora never writes a file without adapters: one would load as a silent no-op.
  if (contents.tensors.empty()) fail("lora", path + " holds no adapter tensors");
  WeightMap adapters;
  auto& params = model.parameters();
  for (auto& [k, v] : contents.tensors) {
    std::string prefix = ends_with(k, kA)       ? k.substr(0, k.size() - kA.size())
                         : ends_with(k, kB)     ? k.substr(0, k.size() - kB.size())
                         : ends_with(k, kScale) ? k.substr(0, k.size() - kScale.size())
                                                : "";
    if (prefix.empty() || !params.count(prefix + ".weight"))
      fail("lora", path + ": adapter '" + k + "' does not fit this model");
    require_finite(v, "lora", path + ": adapter '" + k + "'");
    adapters.insert_or_assign(k, v);
  }
  // An adapter missing one of its tensors would be skipped by the layer without a word.
  for (auto& [k, v] : adapters) {
    const std::string prefix = k.substr(0, k.rfind(".lora_"));
    for (const auto* part : {&kA, &kB, &kScale})
      if (!adapters.count(prefix + *part))
        fail("lora", path + ": adapter '" + prefix + "' has no '" + part->substr(1) + "' tensor");
  }
  if (!(c.dropout >= 0 && c.dropout < 1)) fail("lora", path + ": dropout must be in [0, 1)");
  model.set_parameters(adapters, /*allow_new=*/true);  // shapes are checked by the layers
  model.lora_dropout() = {c.dropout, 0};
  return c;
}

}  // namespace mlxgp
