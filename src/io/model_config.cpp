// parse_model_config: HF config.json -> ModelConfig, with HF's defaults and both rope layouts
// (transformers 5.x `rope_parameters`, older `rope_theta` + `rope_scaling`).
#include "mlxgp/model_config.h"

#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "mlxgp/error.h"

namespace mlxgp {

namespace {

using json = nlohmann::json;

// Reads an optional integer field; null or absent keeps the default.
int get_int(const json& j, const char* key, int def, bool required = false) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) fail("config", std::string("config.json is missing required field '") + key + "'");
    return def;
  }
  if (!it->is_number_integer()) fail("config", std::string("field '") + key + "' must be an integer");
  long long v = it->get<long long>();
  if (v < 0 || v > (1LL << 31) - 1) fail("config", std::string("field '") + key + "' is out of range");
  return static_cast<int>(v);
}

float get_float(const json& j, const char* key, float def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_number()) fail("config", std::string("field '") + key + "' must be a number");
  return it->get<float>();
}

bool get_bool(const json& j, const char* key, bool def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_boolean()) fail("config", std::string("field '") + key + "' must be true or false");
  return it->get<bool>();
}

std::optional<int> get_opt_int(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return get_int(j, key, 0);
}

// HF rope dict: {"rope_type" | "type", "factor", "low_freq_factor", ...}.
std::optional<RopeScaling> parse_rope(const json& r) {
  if (!r.is_object()) fail("config", "rope_scaling/rope_parameters must be an object");
  RopeScaling s;
  if (auto it = r.find("rope_type"); it != r.end() && it->is_string()) s.rope_type = *it;
  else if (auto t = r.find("type"); t != r.end() && t->is_string()) s.rope_type = *t;
  s.factor = get_float(r, "factor", 1.0f);
  s.low_freq_factor = get_float(r, "low_freq_factor", 1.0f);
  s.high_freq_factor = get_float(r, "high_freq_factor", 4.0f);
  s.original_max_position_embeddings = get_int(r, "original_max_position_embeddings", 8192);
  if (s.rope_type != "default" && s.rope_type != "linear" && s.rope_type != "llama3")
    fail("config", "unsupported rope_type '" + s.rope_type + "' (supported: default, linear, llama3)");
  if (s.factor <= 0) fail("config", "rope scaling factor must be positive");
  if (s.rope_type == "llama3" && s.high_freq_factor == s.low_freq_factor)
    fail("config", "llama3 rope scaling needs high_freq_factor != low_freq_factor");
  if (s.rope_type == "default") return std::nullopt;
  return s;
}

std::string number_text(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

}  // namespace

void validate_model_config(const ModelConfig& c, const std::string& component) {
  auto positive_int = [&](const char* name, long long v) {
    if (v <= 0) fail(component, std::string("field '") + name + "' must be a positive integer, got " + std::to_string(v));
  };
  auto positive_real = [&](const char* name, double v) {
    if (!std::isfinite(v) || v <= 0)
      fail(component, std::string("field '") + name + "' must be a finite number > 0, got " + number_text(v));
  };
  positive_int("vocab_size", c.vocab_size);
  positive_int("hidden_size", c.hidden_size);
  positive_int("intermediate_size", c.intermediate_size);
  positive_int("num_hidden_layers", c.num_hidden_layers);
  positive_int("num_attention_heads", c.num_attention_heads);
  positive_int("num_key_value_heads", c.num_key_value_heads);
  positive_int("head_dim", c.head_dim);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail(component, "num_attention_heads must be a multiple of num_key_value_heads");
  if (c.head_dim % 2 != 0) fail(component, "head_dim must be even for rotary embeddings");
  if (c.max_position_embeddings < 0)
    fail(component, "field 'max_position_embeddings' must be >= 0, got " + std::to_string(c.max_position_embeddings));
  positive_real("rms_norm_eps", c.rms_norm_eps);
  positive_real("rope_theta", c.rope_theta);
  if (c.rope_scaling) {
    positive_real("rope_scaling.factor", c.rope_scaling->factor);
    positive_real("rope_scaling.low_freq_factor", c.rope_scaling->low_freq_factor);
    positive_real("rope_scaling.high_freq_factor", c.rope_scaling->high_freq_factor);
    positive_int("rope_scaling.original_max_position_embeddings", c.rope_scaling->original_max_position_embeddings);
  }
  if (c.sliding_window && *c.sliding_window < 1) fail(component, "sliding_window must be at least 1");
  if (!c.sliding_layers.empty() && static_cast<long long>(c.sliding_layers.size()) != c.num_hidden_layers)
    fail(component, "layer_types must list one entry per layer");
}

ModelConfig parse_model_config(const std::string& json_text) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    fail("config", std::string("malformed config.json: ") + e.what());
  }
  if (!j.is_object()) fail("config", "config.json must be a JSON object");
  ModelConfig c;
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string()) fail("config", "config.json is missing 'model_type'");
  c.model_type = *mt;
  c.vocab_size = get_int(j, "vocab_size", 0, true);
  c.hidden_size = get_int(j, "hidden_size", 0, true);
  c.intermediate_size = get_int(j, "intermediate_size", 0, true);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", 0, true);
  c.num_attention_heads = get_int(j, "num_attention_heads", 0, true);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", 0);
  if (c.num_key_value_heads == 0) c.num_key_value_heads = c.num_attention_heads;
  c.head_dim = get_int(j, "head_dim", 0);
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_hidden_layers <= 0 ||
      c.num_attention_heads <= 0)
    fail("config", "vocab_size, hidden_size, intermediate_size, num_hidden_layers and num_attention_heads "
                   "must be positive");
  if (c.head_dim == 0) {
    if (c.hidden_size % c.num_attention_heads != 0)
      fail("config", "hidden_size is not divisible by num_attention_heads");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail("config", "num_attention_heads must be a multiple of num_key_value_heads");
  if (c.head_dim % 2 != 0) fail("config", "head_dim must be even for rotary embeddings");
  c.rms_norm_eps = get_float(j, "rms_norm_eps", c.rms_norm_eps);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", c.max_position_embeddings);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", c.tie_word_embeddings);
  c.attention_bias = get_bool(j, "attention_bias", c.attention_bias);
  c.mlp_bias = get_bool(j, "mlp_bias", c.mlp_bias);
  c.sliding_window = get_opt_int(j, "sliding_window");
  // qwen2/qwen3 carry a sliding_window that only applies when use_sliding_window is true (transformers
  // Qwen2Config defaults it to false); mistral has no such switch.
  const bool qwen = c.model_type == "qwen2" || c.model_type == "qwen3";
  if (!get_bool(j, "use_sliding_window", !qwen)) c.sliding_window.reset();
  if (c.sliding_window && *c.sliding_window < 1) fail("config", "sliding_window must be at least 1");
  // Which layers slide, as transformers 5 decides: MistralConfig ignores layer_types (all layers use
  // config.sliding_window); Qwen2Config/Qwen3Config take layer_types, else layers >= max_window_layers.
  if (c.sliding_window && c.model_type == "mistral") {
    c.sliding_layers.assign(c.num_hidden_layers, true);
  } else if (c.sliding_window && qwen) {
    if (auto it = j.find("layer_types"); it != j.end() && !it->is_null()) {
      if (!it->is_array() || static_cast<int>(it->size()) != c.num_hidden_layers)
        fail("config", "layer_types must list one entry per layer");
      for (auto& e : *it) {
        if (!e.is_string()) fail("config", "layer_types entries must be strings");
        c.sliding_layers.push_back(e.get<std::string>() == "sliding_attention");
      }
    } else {
      const int first = get_int(j, "max_window_layers", 28);
      for (int i = 0; i < c.num_hidden_layers; ++i) c.sliding_layers.push_back(i >= first);
    }
  }
  if (auto it = j.find("hidden_act"); it != j.end() && it->is_string()) c.hidden_act = *it;
  c.bos_token_id = get_opt_int(j, "bos_token_id");
  c.pad_token_id = get_opt_int(j, "pad_token_id");
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    if (it->is_array()) {
      for (auto& e : *it) {
        if (!e.is_number_integer()) fail("config", "eos_token_id entries must be integers");
        c.eos_token_id.push_back(e.get<int>());
      }
    } else if (it->is_number_integer()) {
      c.eos_token_id.push_back(it->get<int>());
    } else {
      fail("config", "eos_token_id must be an integer or a list of integers");
    }
  }
  // transformers 5.x nests rope_theta inside rope_parameters; older files keep it top level.
  c.rope_theta = get_float(j, "rope_theta", c.rope_theta);
  if (auto it = j.find("rope_parameters"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) fail("config", "rope_parameters must be an object");
    c.rope_theta = get_float(*it, "rope_theta", c.rope_theta);
    c.rope_scaling = parse_rope(*it);
  }
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) c.rope_scaling = parse_rope(*it);
  if (c.rope_theta <= 0) fail("config", "rope_theta must be positive");
  if (auto it = j.find("quantization"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) fail("config", "quantization must be an object");
    QuantizationConfig q;
    q.group_size = get_int(*it, "group_size", q.group_size);
    q.bits = get_int(*it, "bits", q.bits);
    if (auto m = it->find("mode"); m != it->end() && m->is_string() && *m != "affine")
      fail("config", "unsupported quantization mode '" + m->get<std::string>() + "' (supported: affine)");
    if (q.bits < 2 || q.bits > 8 || (q.group_size != 32 && q.group_size != 64 && q.group_size != 128))
      fail("config", "unsupported quantization (bits " + std::to_string(q.bits) + ", group_size " +
                         std::to_string(q.group_size) + ")");
    c.quantization = q;
  }
  validate_model_config(c, "config");
  return c;
}

}  // namespace mlxgp
