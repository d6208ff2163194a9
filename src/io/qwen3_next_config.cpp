// io::read_qwen3_next_fields: qwen3_next_config.h.
#include "io/qwen3_next_config.h"

#include <string>

#include "io/layer_types.h"
#include "mlxgp/error.h"

namespace mlxgp::io {

namespace {

using json = nlohmann::json;

bool present(const json& j, const char* key) { return j.contains(key) && !j.at(key).is_null(); }

int count(const json& j, const char* key, int def) {
  if (!present(j, key)) return def;
  const auto& v = j.at(key);
  if (!v.is_number_integer() || v.get<long long>() < 0 || v.get<long long>() > (1LL << 30))
    fail("config", std::string("field '") + key + "' must be a non-negative integer");
  return static_cast<int>(v.get<long long>());
}

}  // namespace

bool is_qwen3_next_type(const std::string& t) {
  return t == "qwen3_next" || t == "qwen3_5_text" || t == "qwen3_5_moe_text";
}

json qwen3_next_common_fields(const json& in) {
  json j = in;
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (!present(j, key) || !j.at(key).is_object()) continue;
    auto& r = j[key];
    r.erase("mrope_section");
    r.erase("mrope_interleaved");
    if (r.contains("type") && r["type"] == "default") {  // (mlx-lm's spelling of the default)
      r.erase("type");
      r["rope_type"] = "default";
    }
    if (!r.contains("partial_rotary_factor") && !present(in, "partial_rotary_factor"))
      r["partial_rotary_factor"] = 0.25;
  }
  if (!present(j, "partial_rotary_factor") && !present(j, "rope_parameters")) j["partial_rotary_factor"] = 0.25;
  if (in.value("model_type", "") == "qwen3_5_moe_text" && !present(j, "intermediate_size"))
    j["intermediate_size"] = count(in, "moe_intermediate_size", 512);
  return j;
}

void read_qwen3_next_fields(const json& j, ModelConfig& c) {
  const int n = c.num_hidden_layers;
  if (present(j, "layer_types")) {
    c.linear_layers = recurrent_layer_flags(j.at("layer_types"), n, c.model_type, "linear_attention");
  } else {
    const int interval = count(j, "full_attention_interval", 4);
    if (interval < 1) fail("config", "full_attention_interval must be at least 1");
    c.linear_layers.assign(n, false);
    for (int i = 0; i < n; ++i) c.linear_layers[i] = (i + 1) % interval != 0;
  }
  c.linear_key_heads = count(j, "linear_num_key_heads", 16);
  c.linear_value_heads = count(j, "linear_num_value_heads", 32);
  c.linear_key_dim = count(j, "linear_key_head_dim", 128);
  c.linear_value_dim = count(j, "linear_value_head_dim", 128);
  c.linear_conv_kernel = count(j, "linear_conv_kernel_dim", 4);
  if (c.linear_key_heads < 1 || c.linear_value_heads < 1 || c.linear_key_dim < 1 || c.linear_value_dim < 1 ||
      c.linear_conv_kernel < 1)
    fail("config",
         "linear_num_key_heads, linear_num_value_heads, linear_key_head_dim, linear_value_head_dim and "
         "linear_conv_kernel_dim must be at least 1");
  if (c.linear_value_heads % c.linear_key_heads != 0)
    fail("config", "linear_num_value_heads must be a multiple of linear_num_key_heads");
  c.attention_output_gate = true;
  if (c.model_type == "qwen3_5_text") return;
  // The experts (Qwen3NextConfig: 512 x top-10 of width 512 and a shared one of 512; Qwen3_5MoeTextConfig: 256 x
  // top-8), softmax-routed, each layer's shared expert behind a sigmoid gate.
  const bool next = c.model_type == "qwen3_next";
  c.num_experts = count(j, "num_experts", next ? 512 : 256);
  if (c.num_experts == 0) return;  // (Qwen3NextConfig: a dense MLP in every layer)
  c.num_experts_per_tok = count(j, "num_experts_per_tok", next ? 10 : 8);
  c.moe_intermediate_size = count(j, "moe_intermediate_size", 512);
  c.shared_expert_intermediate_size = count(j, "shared_expert_intermediate_size", 512);
  if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.num_experts || c.moe_intermediate_size < 1)
    fail("config", "num_experts_per_tok must be in [1, num_experts] and moe_intermediate_size at least 1");
  c.mlp_only_layers.clear();
  c.decoder_sparse_step = 1;
  c.norm_topk_prob = true;  // (Qwen3_5MoeTopKRouter always renormalises)
  if (!next) return;
  if (present(j, "norm_topk_prob")) {
    if (!j.at("norm_topk_prob").is_boolean()) fail("config", "field 'norm_topk_prob' must be true or false");
    c.norm_topk_prob = j.at("norm_topk_prob").get<bool>();
  }
  c.decoder_sparse_step = count(j, "decoder_sparse_step", 1);
  if (c.decoder_sparse_step < 1) fail("config", "decoder_sparse_step must be at least 1");
  if (present(j, "mlp_only_layers")) {
    const auto& l = j.at("mlp_only_layers");
    if (!l.is_array()) fail("config", "mlp_only_layers must be a list of layer indices");
    for (const auto& e : l) {
      if (!e.is_number_integer()) fail("config", "mlp_only_layers entries must be integers");
      c.mlp_only_layers.push_back(e.get<int>());
    }
  }
}

}  // namespace mlxgp::io
