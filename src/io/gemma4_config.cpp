#include "io/gemma4_config.h"

#include <cmath>
#include <string>

#include "mlxgp/error.h"

namespace mlxgp::io {

namespace {

using json = nlohmann::json;

bool has(const json& j, const char* key) { return j.contains(key) && !j.at(key).is_null(); }

constexpr int kMaxLayers = 1 << 16;

int whole(const json& v, const std::string& what) {
  if (!v.is_number_integer()) fail("config", what + " must be an integer");
  const auto x = v.get<long long>();
  if (x < 0 || x > (1LL << 30)) fail("config", what + " is out of range");
  return static_cast<int>(x);
}

int int_field(const json& j, const char* key, int def) { return has(j, key) ? whole(j.at(key), key) : def; }

bool bool_field(const json& j, const char* key, bool def) {
  if (!has(j, key)) return def;
  if (!j.at(key).is_boolean()) fail("config", std::string("field '") + key + "' must be true or false");
  return j.at(key).get<bool>();
}

}  // namespace

json gemma4_common_fields(const json& in) {
  json j = in;
  // (the per-layer fields hold one entry a layer: a corrupt count must not allocate gigabytes)
  if (const int n = int_field(j, "num_hidden_layers", 0); n > kMaxLayers)
    fail("config", "num_hidden_layers " + std::to_string(n) + " is out of range for gemma4_text (at most " +
                       std::to_string(kMaxLayers) + ")");
  if (auto it = j.find("use_bidirectional_attention"); it != j.end()) {
    // "vision": image tokens see each other both ways, text stays causal; a text-only model is causal throughout.
    if (!it->is_null() && !(it->is_string() && (*it == "vision" || *it == "all")))
      fail("config", "use_bidirectional_attention must be null, \"vision\" or \"all\"");
    if (*it == "all") fail("config", "use_bidirectional_attention \"all\" is not supported (causal attention only)");
    j.erase(it);
  }
  if (!has(j, "rope_parameters"))
    j["rope_parameters"] = {
        {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}},
        {"full_attention", {{"rope_type", "proportional"}, {"partial_rotary_factor", 0.25}, {"rope_theta", 1e6}}}};
  return j;
}

void read_gemma4_fields(const json& j, ModelConfig& c) {
  const int n = c.num_hidden_layers;
  // Gemma4TextConfig.__post_init__ makes the last layer a full-attention one whatever layer_types says.
  if (!c.sliding_layers.empty()) c.sliding_layers.back() = false;
  c.attention_k_eq_v = bool_field(j, "attention_k_eq_v", false);
  c.layer_head_dims.assign(n, c.head_dim);
  c.layer_kv_heads.assign(n, c.num_key_value_heads);
  if (auto it = j.find("per_layer_config"); it != j.end() && !it->is_null()) {
    // What transformers 5.24 writes: {"<layer>": {"head_dim": ..., "num_key_value_heads": ...}}.
    if (!it->is_object()) fail("config", "per_layer_config must be an object of layer indices");
    for (auto& [key, entry] : it->items()) {
      int layer = -1;
      try {
        size_t used = 0;
        layer = std::stoi(key, &used);
        if (used != key.size()) layer = -1;
      } catch (const std::exception&) {
      }
      if (layer < 0 || layer >= n) fail("config", "per_layer_config key '" + key + "' is not a layer index");
      if (!entry.is_object()) fail("config", "per_layer_config entries must be objects");
      for (auto& [field, value] : entry.items()) {
        const std::string what = "per_layer_config[" + key + "]." + field;
        if (field == "head_dim") c.layer_head_dims[layer] = whole(value, what);
        else if (field == "num_key_value_heads") c.layer_kv_heads[layer] = whole(value, what);
        else fail("config", "per_layer_config field '" + field + "' is not supported (head_dim, num_key_value_heads)");
      }
    }
  } else {
    // The class's derivation: full-attention layers are global_head_dim wide (512 when absent) and, with
    // attention_k_eq_v, have num_global_key_value_heads heads.
    const int global_dim = int_field(j, "global_head_dim", 512);
    const int global_kv = c.attention_k_eq_v ? int_field(j, "num_global_key_value_heads", 0) : 0;
    for (int i = 0; i < n; ++i) {
      if (layer_slides(c, i)) continue;
      c.layer_head_dims[i] = global_dim;
      if (global_kv > 0) c.layer_kv_heads[i] = global_kv;
    }
  }
  for (int i = 0; i < n; ++i) {
    const int d = c.layer_head_dims[i], kv = c.layer_kv_heads[i];
    if (d <= 0 || d % 2 != 0) fail("config", "layer " + std::to_string(i) + "'s head_dim must be even and positive");
    if (static_cast<long long>(c.num_attention_heads) * d > kMaxLayers * 1024LL)
      fail("config", "layer " + std::to_string(i) + "'s num_attention_heads x head_dim is out of range");
    if (kv <= 0 || c.num_attention_heads % kv != 0)
      fail("config", "layer " + std::to_string(i) + "'s num_key_value_heads must divide num_attention_heads");
  }
  if (auto it = j.find("final_logit_softcapping"); it != j.end() && !it->is_null()) {
    if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() <= 0)
      fail("config", "field 'final_logit_softcapping' must be a finite number > 0");
    c.final_logit_softcapping = it->get<float>();
  }
  // Gemma4TextConfig's defaults: 256 features per layer from a 262144-row table, no sharing.
  c.per_layer_input_size = int_field(j, "hidden_size_per_layer_input", 256);
  c.per_layer_input_vocab = int_field(j, "vocab_size_per_layer_input", 262144);
  if (c.per_layer_input_size > 0 && c.per_layer_input_vocab < c.vocab_size)
    fail("config", "vocab_size_per_layer_input (" + std::to_string(c.per_layer_input_vocab) +
                       ") smaller than vocab_size is not supported");
  c.num_kv_shared_layers = int_field(j, "num_kv_shared_layers", 0);
  c.double_wide_mlp = bool_field(j, "use_double_wide_mlp", false);
  if (c.num_kv_shared_layers > 0) {
    // Gemma4TextConfig.kv_sharing_modes: every type a sharing layer has must have a layer before them producing it.
    const int first = n - c.num_kv_shared_layers;
    if (first < 1) fail("config", "num_kv_shared_layers must be smaller than num_hidden_layers");
    for (int i = first; i < n; ++i) {
      bool produced = false;
      for (int k = 0; k < first; ++k) produced = produced || layer_slides(c, k) == layer_slides(c, i);
      if (!produced)
        fail("config", "layer " + std::to_string(i) + " shares keys and values with no earlier layer of its type");
    }
  }
  if (bool_field(j, "enable_moe_block", false)) {
    // No class defaults for these (None): Gemma4TextRouter / Gemma4TextExperts need all three.
    for (const char* key : {"num_experts", "top_k_experts", "moe_intermediate_size"})
      if (!has(j, key)) fail("config", std::string(key) + " is required with enable_moe_block");
    c.num_experts = int_field(j, "num_experts", 0);
    c.num_experts_per_tok = int_field(j, "top_k_experts", 0);
    c.moe_intermediate_size = int_field(j, "moe_intermediate_size", 0);
    if (c.num_experts < 1 || c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.num_experts)
      fail("config", "top_k_experts must be in [1, num_experts]");
    if (c.moe_intermediate_size < 1) fail("config", "moe_intermediate_size must be positive");
    c.norm_topk_prob = true;  // Gemma4TextRouter renormalises the top-k probabilities
  }
}

}  // namespace mlxgp::io
