#include "io/lfm2_config.h"

#include <cmath>
#include <string>

#include "io/layer_types.h"
#include "mlxgp/error.h"

namespace mlxgp::io {

namespace {

using json = nlohmann::json;

bool present(const json& j, const char* key) { return j.contains(key) && !j.at(key).is_null(); }

long long integer(const json& v, const std::string& what) {
  if (!v.is_number_integer()) fail("config", what + " must be an integer");
  const auto x = v.get<long long>();
  if (x < 0 || x > (1LL << 30)) fail("config", what + " is out of range");
  return x;
}

bool boolean(const json& j, const char* key, bool def) {
  if (!present(j, key)) return def;
  if (!j.at(key).is_boolean()) fail("config", std::string("field '") + key + "' must be true or false");
  return j.at(key).get<bool>();
}

}  // namespace

json lfm2_common_fields(const json& in) {
  json j = in;
  j["rms_norm_eps"] = present(in, "norm_eps") ? in.at("norm_eps") : json(1e-5);
  if (present(in, "tie_embedding")) j["tie_word_embeddings"] = in.at("tie_embedding");
  j["hidden_act"] = "silu";  // Lfm2MLP / Lfm2MoeMLP call F.silu
  j["attention_bias"] = j["mlp_bias"] = false;
  j.erase("sliding_window");
  // Lfm2MoeConfig: its dense layers are intermediate_size wide as given (no block_* fields).
  if (in.value("model_type", "") == "lfm2_moe") return j;
  if (present(in, "block_ff_dim")) j["intermediate_size"] = in.at("block_ff_dim");
  if (!present(j, "intermediate_size")) j["intermediate_size"] = 12288;  // Lfm2Config's default
  if (boolean(in, "block_auto_adjust_ff_dim", true)) {                   // Lfm2MLP.__init__
    long long ff = integer(j.at("intermediate_size"), "intermediate_size");
    ff = static_cast<long long>(2.0 * static_cast<double>(ff) / 3.0);
    if (present(in, "block_ffn_dim_multiplier") || !in.contains("block_ffn_dim_multiplier")) {
      const json m = in.value("block_ffn_dim_multiplier", json(1.0));
      if (!m.is_number() || !std::isfinite(m.get<double>()) || m.get<double>() <= 0)
        fail("config", "block_ffn_dim_multiplier must be a positive number");
      const long long multiple =
          present(in, "block_multiple_of") ? integer(in.at("block_multiple_of"), "block_multiple_of") : 256;
      if (multiple < 1) fail("config", "block_multiple_of must be at least 1");
      ff = static_cast<long long>(m.get<double>() * static_cast<double>(ff));
      ff = multiple * ((ff + multiple - 1) / multiple);
    }
    j["intermediate_size"] = ff;
  }
  return j;
}

void read_lfm2_fields(const json& j, ModelConfig& c) {
  const int n = c.num_hidden_layers;
  c.conv_layers.assign(n, false);
  if (present(j, "layer_types")) {
    c.conv_layers = recurrent_layer_flags(j.at("layer_types"), n, "lfm2", "conv");
  } else if (present(j, "full_attn_idxs")) {
    const auto& idx = j.at("full_attn_idxs");
    if (!idx.is_array()) fail("config", "full_attn_idxs must be a list of layer indices");
    c.conv_layers.assign(n, true);
    for (const auto& e : idx) {
      const long long i = integer(e, "full_attn_idxs entries");
      if (i < n) c.conv_layers[i] = false;  // Lfm2Config tests `i in full_attn_idxs` per layer: others are ignored
    }
  }
  c.conv_kernel = present(j, "conv_L_cache") ? static_cast<int>(integer(j.at("conv_L_cache"), "conv_L_cache")) : 3;
  if (c.conv_kernel < 1) fail("config", "conv_L_cache must be at least 1");
  c.conv_bias = boolean(j, "conv_bias", false);
  if (c.model_type != "lfm2_moe") return;
  // Lfm2MoeConfig's experts and their defaults (LFM2-8B-A1B's): 32 of width 1792, top 4, after 2 dense layers; a
  // sigmoid router whose choice adds expert_bias, the chosen scores renormalised and times routed_scaling_factor.
  auto count = [&](const char* key, int def) {
    return present(j, key) ? static_cast<int>(integer(j.at(key), key)) : def;
  };
  c.num_experts = count("num_experts", 32);
  c.num_experts_per_tok = count("num_experts_per_tok", 4);
  c.moe_intermediate_size = count("moe_intermediate_size", 1792);
  if (c.num_experts < 1 || c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.num_experts ||
      c.moe_intermediate_size < 1)
    fail("config", "lfm2_moe needs num_experts >= num_experts_per_tok >= 1 and moe_intermediate_size >= 1");
  c.mlp_only_layers.clear();
  for (int i = 0; i < count("num_dense_layers", 2) && i < n; ++i) c.mlp_only_layers.push_back(i);
  c.sigmoid_routing = true;
  c.use_expert_bias = boolean(j, "use_expert_bias", true);
  c.norm_topk_prob = boolean(j, "norm_topk_prob", true);
  const json r = j.value("routed_scaling_factor", json(1.0));
  if (!r.is_number() || !std::isfinite(r.get<double>()) || r.get<double>() <= 0)
    fail("config", "routed_scaling_factor must be a positive number");
  c.routed_scaling_factor = r.get<float>();
}

}  // namespace mlxgp::io
