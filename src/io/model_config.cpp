// parse_model_config: HF config.json -> ModelConfig, with HF's defaults and both rope layouts
// (transformers 5.x `rope_parameters`, older `rope_theta` + `rope_scaling`).
#include "mlxgp/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include <nlohmann/json.hpp>

#include "io/config_defaults.h"
#include "io/gemma4_config.h"
#include "io/gpt2_config.h"
#include "io/lfm2_config.h"
#include "io/qwen3_next_config.h"
#include "io/multimodal_config.h"
#include "io/quantization_modules.h"
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

// One level of "quantization": the top level, or a module's own entry. mlx-lm's load_model passes an entry to
// to_quantized as it stands, so what an entry leaves out is to_quantized's default (mode affine, that mode's
// group size and bits), not the top level's; mlx-lm's quantize_model always writes all three at the top.
QuantizationConfig read_quantization(const json& e, const std::string& where) {
  QuantizationConfig q;
  if (auto m = e.find("mode"); m != e.end() && !m->is_null()) {
    if (!m->is_string()) fail("config", "quantization mode" + where + " must be a string");
    q.mode = m->get<std::string>();
  }
  const auto defaults = quantization_mode_defaults(q.mode);
  if (!defaults)
    fail("config",
         "unsupported quantization mode '" + q.mode + "'" + where + " (supported: affine, mxfp4, mxfp8, nvfp4)");
  q.group_size = get_int(e, "group_size", defaults->first);
  q.bits = get_int(e, "bits", defaults->second);
  // mlx-lm's per-expert nvfp4 tensor scales: MLX's CPU gather_qmm has no global scale ("only supported on
  // the GPU"), so such a folder cannot run here.
  if (auto g = e.find("global_scale"); g != e.end() && !g->is_null() && *g != false)
    fail("config", "nvfp4 global scales" + where + " are not supported (MLX's CPU kernels have none)");
  // mlx.nn's quantize_input (QQLinear: activations quantized too, a GPU mode) would change every product.
  if (auto qi = e.find("quantize_input"); qi != e.end() && !qi->is_null() && *qi != false)
    fail("config", "quantized activations (quantize_input)" + where + " are not supported");
  const bool ok = q.mode == "affine"
                      ? q.bits >= 2 && q.bits <= 8 && (q.group_size == 32 || q.group_size == 64 || q.group_size == 128)
                      : std::pair{q.group_size, q.bits} == *defaults;
  if (!ok)
    fail("config", "unsupported quantization" + where + " (mode " + q.mode + ", bits " + std::to_string(q.bits) +
                       ", group_size " + std::to_string(q.group_size) + ")");
  return q;
}

// The object-valued entries of "quantization" (true / false entries leave a module to its tensors).
std::map<std::string, QuantizationConfig> module_entries(const json& q) {
  std::map<std::string, QuantizationConfig> out;
  for (auto& [path, e] : q.items())
    if (e.is_object()) out.emplace(path, read_quantization(e, " for '" + path + "'"));
  return out;
}

float get_float(const json& j, const char* key, float def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_number()) fail("config", std::string("field '") + key + "' must be a number");
  return it->get<float>();
}

double get_double(const json& j, const char* key, double def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_number()) fail("config", std::string("field '") + key + "' must be a number");
  return it->get<double>();
}

bool get_bool(const json& j, const char* key, bool def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_boolean()) fail("config", std::string("field '") + key + "' must be true or false");
  return it->get<bool>();
}

// A list entry that must be an int in [0, 2^31) (get<int>() would wrap 2^32 + 2 to 2).
int int_entry(const json& e, const std::string& type_error) {
  if (!e.is_number_integer()) fail("config", type_error);
  const long long v = e.get<long long>();
  if (v < 0 || v > (1LL << 31) - 1) fail("config", type_error + " in [0, 2^31)");
  return static_cast<int>(v);
}

std::optional<int> get_opt_int(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return get_int(j, key, 0);
}

std::vector<float> get_floats(const json& j, const char* key) {
  std::vector<float> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) fail("config", std::string("field '") + key + "' must be a list of numbers");
  for (auto& e : *it) {
    if (!e.is_number()) fail("config", std::string("field '") + key + "' must be a list of numbers");
    out.push_back(e.get<float>());
  }
  return out;
}

// HF rope dict: {"rope_type" | "type", "factor", "low_freq_factor", ...}.
std::optional<RopeScaling> parse_rope(const json& r) {
  if (!r.is_object()) fail("config", "rope_scaling/rope_parameters must be an object");
  RopeScaling s;
  if (auto it = r.find("rope_type"); it != r.end() && it->is_string()) s.rope_type = *it;
  else if (auto t = r.find("type"); t != r.end() && t->is_string()) s.rope_type = *t;
  if (s.rope_type == "su") s.rope_type = "longrope";  // Phi-3's original name (transformers maps it)
  // A longrope or yarn factor left out (yarn: or null, as DeepSeek-V3 writes it) is derived from the
  // context lengths (parse_model_config).
  const bool derived = s.rope_type == "longrope" || s.rope_type == "yarn";
  s.factor = get_float(r, "factor", derived ? 0.0f : 1.0f);
  s.low_freq_factor = get_float(r, "low_freq_factor", 1.0f);
  s.high_freq_factor = get_float(r, "high_freq_factor", 4.0f);
  s.original_max_position_embeddings = get_int(r, "original_max_position_embeddings", 0);
  if (s.rope_type != "default" && s.rope_type != "linear" && s.rope_type != "llama3" && s.rope_type != "longrope" &&
      s.rope_type != "yarn" && s.rope_type != "proportional")
    fail("config", "unsupported rope_type '" + s.rope_type +
                       "' (supported: default, linear, llama3, longrope, yarn, proportional)");
  if (s.rope_type == "proportional") {  // transformers' _compute_proportional_rope_parameters
    s.partial_rotary_factor = get_float(r, "partial_rotary_factor", 1.0f);
    if (!(s.partial_rotary_factor >= 0 && s.partial_rotary_factor <= 1))
      fail("config", "proportional rope's partial_rotary_factor must be in [0, 1]");
  }
  if (!derived && s.factor <= 0) fail("config", "rope scaling factor must be positive");
  if (s.rope_type == "llama3" && s.high_freq_factor == s.low_freq_factor)
    fail("config", "llama3 rope scaling needs high_freq_factor != low_freq_factor");
  if (s.rope_type == "longrope") {
    s.short_factor = get_floats(r, "short_factor");
    s.long_factor = get_floats(r, "long_factor");
    if (auto it = r.find("attention_factor"); it != r.end() && !it->is_null())
      s.attention_factor = get_float(r, "attention_factor", 1.0f);
    for (auto [key, v] : {std::pair{"short_mscale", &s.short_mscale}, std::pair{"long_mscale", &s.long_mscale}})
      if (auto it = r.find(key); it != r.end() && !it->is_null()) {
        *v = get_float(r, key, 1.0f);
        if (!(std::isfinite(**v) && **v > 0))
          fail("config", std::string("longrope ") + key + " must be finite and > 0");
      }
  }
  if (s.rope_type == "yarn") {
    // transformers: `rope_parameters.get("beta_fast") or 32`, so a null or 0 takes the default too.
    auto optional = [&](const char* key) -> std::optional<float> {
      auto it = r.find(key);
      if (it == r.end() || it->is_null()) return std::nullopt;
      return get_float(r, key, 0.0f);
    };
    if (auto b = optional("beta_fast"); b && *b != 0) s.beta_fast = *b;
    if (auto b = optional("beta_slow"); b && *b != 0) s.beta_slow = *b;
    s.attention_factor = optional("attention_factor");
    s.mscale = optional("mscale");
    s.mscale_all_dim = optional("mscale_all_dim");
    if (auto it = r.find("truncate"); it != r.end() && !it->is_null()) {
      if (!it->is_boolean()) fail("config", "rope_parameters field 'truncate' must be true or false");
      s.truncate = it->get<bool>();
    }
    for (auto [name, v] : {std::pair{"beta_fast", s.beta_fast}, std::pair{"beta_slow", s.beta_slow}})
      if (!std::isfinite(v) || v <= 0) fail("config", std::string("yarn ") + name + " must be finite and positive");
    if (s.attention_factor && !(std::isfinite(*s.attention_factor) && *s.attention_factor > 0))
      fail("config", "yarn attention_factor must be finite and positive");
  }
  if (s.rope_type == "default") return std::nullopt;
  return s;
}

std::string number_text(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

std::vector<bool> layer_types_sliding(const json& types, int layers) {
  if (!types.is_array() || static_cast<int>(types.size()) != layers)
    fail("config", "layer_types must list one entry per layer");
  std::vector<bool> out;
  for (auto& e : types) {
    if (!e.is_string()) fail("config", "layer_types entries must be strings");
    const auto t = e.get<std::string>();
    if (t != "sliding_attention" && t != "full_attention")
      fail("config", "unsupported layer type '" + t + "' (supported: full_attention, sliding_attention)");
    out.push_back(t == "sliding_attention");
  }
  return out;
}

// EXAONE 4.0's own configs spell the pattern as letters ("LLLG": three local layers, then a global one), which
// its original code and mlx-lm repeat over the layers; transformers' Exaone4Config reads an integer pattern only
// (those configs carry layer_types, read first).
std::vector<bool> exaone_pattern_sliding(const std::string& pattern, int layers) {
  if (pattern.empty() || pattern.find_first_not_of("LG") != std::string::npos)
    fail("config",
         "sliding_window_pattern must be an integer or letters L (local) and G (global), got '" + pattern + "'");
  std::vector<bool> out;
  for (int i = 0; i < layers; ++i) out.push_back(pattern[i % pattern.size()] == 'L');
  return out;
}

// Which layers attend within sliding_window, as each transformers 5 architecture decides.
void parse_sliding_layers(const json& j, ModelConfig& c) {
  const auto& mt = c.model_type;
  const int n = c.num_hidden_layers;
  // Absent (not null): the config class's default window (MistralConfig's 4096, ...).
  const auto* defaults = io::class_defaults(mt);
  c.sliding_window = get_opt_int(j, "sliding_window");
  if (!j.contains("sliding_window") && defaults && defaults->sliding_window > 0)
    c.sliding_window = defaults->sliding_window;
  // qwen2/qwen3/smollm3 carry a sliding_window that only applies when use_sliding_window is true (their
  // configs default it to false); mistral and phi3 have no such switch.
  const bool switched = mt == "qwen2" || mt == "qwen3" || mt == "smollm3" || mt == "qwen2_moe" || mt == "qwen3_moe";
  if (!get_bool(j, "use_sliding_window", !switched)) c.sliding_window.reset();
  if (c.sliding_window && *c.sliding_window < 1) fail("config", "sliding_window must be at least 1");
  if (!c.sliding_window) return;
  auto types = j.find("layer_types");
  const bool has_types = types != j.end() && !types->is_null();
  if (mt == "mistral" || mt == "ministral3" || mt == "phi3" || mt == "mixtral" || mt == "phimoe" || mt == "qwen3_moe" ||
      mt == "starcoder2") {
    c.sliding_layers.assign(n, true);  // these configs ignore layer_types: every layer slides
  } else if (switched || mt == "gemma2" || mt == "gemma3_text" || mt == "gpt_oss" || mt == "olmo3" || mt == "cohere2" ||
             mt == "exaone4" || mt == "dots1" || mt == "gemma4_text") {
    if (has_types) {
      c.sliding_layers = layer_types_sliding(*types, n);
    } else if (mt == "gemma2" || mt == "gpt_oss") {  // Gemma2Config's and GptOssConfig's default: even layers slide
      for (int i = 0; i < n; ++i) c.sliding_layers.push_back(i % 2 == 0);
    } else if (mt == "olmo3") {  // Olmo3Config: every 4th layer is global
      for (int i = 0; i < n; ++i) c.sliding_layers.push_back((i + 1) % 4 != 0);
    } else if (mt == "exaone4" && j.contains("sliding_window_pattern") && j["sliding_window_pattern"].is_string()) {
      c.sliding_layers = exaone_pattern_sliding(j["sliding_window_pattern"].get<std::string>(), n);
    } else if (mt == "gemma3_text" || mt == "cohere2" || mt == "exaone4") {  // every pattern-th layer is global
      const int pattern = get_int(j, "sliding_window_pattern", mt == "gemma3_text" ? 6 : 4);
      if (pattern < 1) fail("config", "sliding_window_pattern must be at least 1");
      for (int i = 0; i < n; ++i) c.sliding_layers.push_back((i + 1) % pattern != 0);
    } else if (mt == "gemma4_text") {  // Gemma4TextConfig: five sliding layers to one full one (the last forced full)
      for (int i = 0; i < n; ++i) c.sliding_layers.push_back((i + 1) % 6 != 0);
    } else if (mt == "smollm3") {
      c.sliding_layers.assign(n, false);
    } else if (mt == "qwen2_moe") {  // Qwen2MoeConfig: odd-numbered layers below max_window_layers
      const int first = get_int(j, "max_window_layers", 28);
      for (int i = 0; i < n; ++i) c.sliding_layers.push_back((i + 1) % 2 != 0 && i < first);
    } else {  // (Dots1Config's max_window_layers: 62)
      const int first = get_int(j, "max_window_layers", mt == "dots1" ? 62 : 28);
      for (int i = 0; i < n; ++i) c.sliding_layers.push_back(i >= first);
    }
  }
}

// The group-limited routing fields (ModelConfig::sigmoid_routing, group_limited_greedy), checked so the group
// choice is well defined; the defaults are the class's (DeepseekV3Config: 8 groups, 4 kept, x 2.5; Glm4MoeConfig:
// 1, 1, x 1).
void parse_group_routing(const json& j, ModelConfig& c, int n_group, int topk_group, float scaling) {
  c.n_group = get_int(j, "n_group", n_group);
  c.topk_group = get_int(j, "topk_group", topk_group);
  c.routed_scaling_factor = get_float(j, "routed_scaling_factor", scaling);
  if (c.n_group < 1 || c.num_experts % c.n_group != 0)
    fail("config", "n_group must be >= 1 and divide the " + std::to_string(c.num_experts) + " routed experts");
  if (c.topk_group < 1 || c.topk_group > c.n_group) fail("config", "topk_group must be in [1, n_group]");
  if (c.sigmoid_routing && c.n_group > 1 && c.num_experts / c.n_group < 2)
    fail("config", "n_group leaves fewer than 2 experts a group (groups are scored by their two best)");
  if (c.topk_group * (c.num_experts / c.n_group) < c.num_experts_per_tok)
    fail("config", "topk_group groups hold fewer experts than num_experts_per_tok");
  if (!(std::isfinite(c.routed_scaling_factor) && c.routed_scaling_factor > 0))
    fail("config", "routed_scaling_factor must be a finite number > 0");
}

// Glm4MoeLiteConfig's mlp_layer_types ("dense" / "sparse" a layer; by default a dense first layer, then sparse ones),
// which its decoder layers read instead of first_k_dense_replace. mlx-lm's glm4_moe_lite reads first_k_dense_replace:
// a config whose two disagree would run differently on the two, so it is refused.
void parse_mlp_layer_types(const json& j, ModelConfig& c) {
  std::vector<bool> dense;
  if (auto it = j.find("mlp_layer_types"); it != j.end() && !it->is_null()) {
    if (!it->is_array() || static_cast<int>(it->size()) != c.num_hidden_layers)
      fail("config", "mlp_layer_types must list one entry per layer");
    for (auto& e : *it) {
      if (!e.is_string() || (e != "dense" && e != "sparse"))
        fail("config", "mlp_layer_types entries must be \"dense\" or \"sparse\"");
      dense.push_back(e == "dense");
    }
  } else {
    for (int i = 0; i < c.num_hidden_layers; ++i) dense.push_back(i == 0);
  }
  if (j.contains("first_k_dense_replace")) {
    const int k = get_int(j, "first_k_dense_replace", 1);
    for (int i = 0; i < c.num_hidden_layers; ++i)
      if (dense[i] != (i < k))
        fail("config", "mlp_layer_types and first_k_dense_replace disagree on layer " + std::to_string(i));
  }
  for (int i = 0; i < c.num_hidden_layers; ++i)
    if (dense[i]) c.mlp_only_layers.push_back(i);
}

// DeepseekV2Config / DeepseekV3Config / Glm4MoeLiteConfig's attention fields (ModelConfig::kv_lora_rank; the class
// defaults: DeepSeek's q_lora_rank 1536, heads of 128 + 64 and values of 128, GLM's 768, 192 + 64 and 256): every
// width positive, one key / value head per query head (transformers' expand_kv makes one of each per head; fewer
// would not compose with its repeat_kv), and the cache's view of a layer (one head of latent + shared key).
void parse_latent_attention(const json& j, ModelConfig& c) {
  const bool glm = c.model_type == "glm4_moe_lite";
  c.kv_lora_rank = get_int(j, "kv_lora_rank", 512);
  c.qk_nope_head_dim = get_int(j, "qk_nope_head_dim", glm ? 192 : 128);
  c.qk_rope_head_dim = get_int(j, "qk_rope_head_dim", 64);
  c.v_head_dim = get_int(j, "v_head_dim", glm ? 256 : 128);
  auto q = j.find("q_lora_rank");
  c.q_lora_rank = q == j.end() ? (glm ? 768 : 1536) : q->is_null() ? 0 : get_int(j, "q_lora_rank", 0);
  if (q != j.end() && !q->is_null() && c.q_lora_rank <= 0) fail("config", "q_lora_rank must be positive or null");
  for (auto [name, v] : {std::pair{"kv_lora_rank", c.kv_lora_rank},
                         {"qk_nope_head_dim", c.qk_nope_head_dim},
                         {"qk_rope_head_dim", c.qk_rope_head_dim},
                         {"v_head_dim", c.v_head_dim}})
    if (v <= 0)
      fail("config", std::string("field '") + name + "' must be a positive integer, got " + std::to_string(v));
  if (c.qk_rope_head_dim % 2 != 0) fail("config", "qk_rope_head_dim must be even for rotary embeddings");
  if (c.num_key_value_heads != c.num_attention_heads)
    fail("config", "num_key_value_heads must equal num_attention_heads for latent attention (got " +
                       std::to_string(c.num_key_value_heads) + " and " + std::to_string(c.num_attention_heads) + ")");
  c.rope_interleave = c.model_type == "deepseek_v2" || get_bool(j, "rope_interleave", true);
  c.num_key_value_heads = 1;
  c.head_dim = c.kv_lora_rank + c.qk_rope_head_dim;
}

// Ministral3Config: its rope_parameters' default (YaRN, factor 16 over 16384 positions, mscale 1 / 1) and the
// query scale its attention reads from them (llama_4_scaling_beta over original_max_position_embeddings;
// transformers fails without them, so they are required here).
void parse_llama4_scaling(const json& j, ModelConfig& c) {
  const auto given = [&](const char* key) { return j.contains(key) && !j.at(key).is_null(); };
  json r = given("rope_parameters") ? j.at("rope_parameters") : given("rope_scaling") ? j.at("rope_scaling") : json();
  if (r.is_null()) {
    r = {{"rope_type", "yarn"},
         {"factor", 16.0},
         {"original_max_position_embeddings", 16384},
         {"beta_fast", 32.0},
         {"beta_slow", 1.0},
         {"mscale", 1.0},
         {"mscale_all_dim", 1.0},
         {"llama_4_scaling_beta", 0.1}};
    c.rope_scaling = parse_rope(r);
  }
  auto beta = r.find("llama_4_scaling_beta");
  if (beta == r.end() || !beta->is_number())
    fail("config",
         "ministral3 needs rope_parameters.llama_4_scaling_beta (a number: its attention scales queries by it)");
  c.llama4_scaling_beta = get_float(r, "llama_4_scaling_beta", 0.0f);
  if (!std::isfinite(*c.llama4_scaling_beta)) fail("config", "rope_parameters.llama_4_scaling_beta must be finite");
  // transformers' attention reads original_max_position_embeddings from rope_parameters after
  // standardize_rope_params filled it in: for a scaled rope, the length its RoPE uses (parse_rope_fields sets it
  // after this call).
  c.llama4_scaling_positions = get_int(r, "original_max_position_embeddings", 0);
  if (c.llama4_scaling_positions <= 0 && !c.rope_scaling)
    fail("config",
         "ministral3 needs rope_parameters.original_max_position_embeddings > 0 (its query scale divides by it)");
}

// HunYuanDenseV1's checkpoints label their RoPE "dynamic" with a fixed alpha, which transformers reads as ntk_alpha: a
// static base of rope_theta * alpha^(head_dim / (head_dim - 2)) (compute_ntk_alpha_rope_parameters), no scaling.
// Returns r with that alpha taken out into `alpha` (r itself for every other configuration).
json take_ntk_alpha(const json& r, const ModelConfig& c, std::optional<float>& alpha) {
  if ((c.model_type != "hunyuan_v1_dense" && c.model_type != "hunyuan_v1_moe") || !r.is_object()) return r;
  const auto type = r.contains("rope_type") ? r["rope_type"] : r.contains("type") ? r["type"] : json();
  if (type != "dynamic" || !r.contains("alpha") || r["alpha"].is_null()) return r;
  alpha = get_float(r, "alpha", 1.0f);
  if (!(std::isfinite(*alpha) && *alpha > 0)) fail("config", "rope alpha must be a finite number > 0");
  json out = r;
  out.erase("type");
  out["rope_type"] = "default";
  return out;
}

// rope_theta / rope_scaling: transformers 5.x `rope_parameters` (flat, or one dict per layer type as
// gemma3 writes it) and the older top-level `rope_theta` + `rope_scaling` (+ gemma3's rope_local_base_freq).
void parse_rope_fields(const json& j, ModelConfig& c) {
  std::optional<float> alpha;  // hunyuan_v1_dense (take_ntk_alpha)
  c.rope_theta = get_float(j, "rope_theta", c.rope_theta);
  // Of the architectures here only Phi's, Phi-3's, GLM's, StableLM's, GPT-NeoX's and Nemotron's code rotates part of
  // each head (transformers 5.24: the llama family's default RoPE ignores the field), and only Gemma 3's config
  // reads rope_local_base_freq.
  const bool partial = c.model_type == "phi" || c.model_type == "phi3" || c.model_type == "glm" ||
                       c.model_type == "glm4" || c.model_type == "glm4_moe" || c.model_type == "glm4_moe_lite" ||
                       c.model_type == "stablelm" || c.model_type == "gpt_neox" || c.model_type == "nemotron" ||
                       io::is_qwen3_next_type(c.model_type);
  if (partial) c.partial_rotary_factor = get_float(j, "partial_rotary_factor", c.partial_rotary_factor);
  if (c.model_type == "gpt_neox") {  // GPTNeoXConfig's older spellings (its convert_rope_params_to_dict)
    c.partial_rotary_factor = get_float(j, "rotary_pct", c.partial_rotary_factor);
    c.rope_theta = get_float(j, "rotary_emb_base", c.rope_theta);
  }
  if (auto it = j.find("rope_local_base_freq"); c.model_type == "gemma3_text" && it != j.end() && !it->is_null())
    c.sliding_rope_theta = get_float(j, "rope_local_base_freq", 10000.0f);
  if (auto it = j.find("rope_parameters"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) fail("config", "rope_parameters must be an object");
    const bool nested = it->contains("full_attention") || it->contains("sliding_attention");
    for (auto& [key, value] : it->items()) {
      if (nested && key != "full_attention" && key != "sliding_attention")
        fail("config", "rope_parameters has unknown layer type '" + key + "'");
    }
    auto read = [&](const json& r, float& theta, std::optional<RopeScaling>& scaling) {
      if (!r.is_object()) fail("config", "rope_parameters must be an object");
      theta = get_float(r, "rope_theta", theta);
      if (partial) c.partial_rotary_factor = get_float(r, "partial_rotary_factor", c.partial_rotary_factor);
      scaling = parse_rope(take_ntk_alpha(r, c, alpha));
    };
    if (!nested) read(*it, c.rope_theta, c.rope_scaling);
    if (auto f = it->find("full_attention"); nested && f != it->end() && !f->is_null())
      read(*f, c.rope_theta, c.rope_scaling);
    if (auto s = it->find("sliding_attention"); nested && s != it->end() && !s->is_null()) {
      float theta = c.sliding_rope_theta.value_or(c.rope_theta);
      read(*s, theta, c.sliding_rope_scaling);
      c.sliding_rope_theta = theta;
    }
  }
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null())
    c.rope_scaling = parse_rope(take_ntk_alpha(*it, c, alpha));
  if (alpha) {
    if (c.head_dim <= 2) fail("config", "rope alpha needs head_dim > 2");
    c.rope_theta *= std::pow(*alpha, static_cast<float>(c.head_dim) / static_cast<float>(c.head_dim - 2));
  }
  // Olmo3Config: the older top-level rope_theta / rope_scaling go to the full-attention layers; the sliding ones
  // rotate with rope_theta unscaled (its convert_rope_params_to_dict).
  if (c.model_type == "olmo3" && !(j.contains("rope_parameters") && j["rope_parameters"].is_object() &&
                                   j["rope_parameters"].contains("sliding_attention")))
    c.sliding_rope_theta = get_float(j, "rope_theta", c.rope_theta);
  // GptOssConfig without rope_parameters: its YaRN (factor 32 over 4096 positions, untruncated ramp).
  const auto given = [&](const char* key) { return j.contains(key) && !j.at(key).is_null(); };
  if (c.model_type == "gpt_oss" && !given("rope_parameters") && !given("rope_scaling")) {
    RopeScaling y;
    y.rope_type = "yarn";
    y.factor = 32.0f;
    y.original_max_position_embeddings = 4096;
    y.truncate = false;
    c.rope_scaling = y;
  }
  if (c.model_type == "ministral3") parse_llama4_scaling(j, c);  // (its default YaRN before the lengths below)
  if (c.rope_theta <= 0) fail("config", "rope_theta must be positive");
  if (!(c.partial_rotary_factor > 0 && c.partial_rotary_factor <= 1))
    fail("config", "partial_rotary_factor must be in (0, 1]");
  // transformers' standardize_rope_params: the pre-training length defaults to max_position_embeddings,
  // and Phi-3's top-level original_max_position_embeddings takes priority.
  for (auto* s : {&c.rope_scaling, &c.sliding_rope_scaling}) {
    if (!*s) continue;
    auto& r = **s;
    // (transformers gives the top-level field priority for llama3, yarn and longrope alike.)
    if (auto top = get_int(j, "original_max_position_embeddings", 0); top > 0 && r.rope_type != "linear")
      r.original_max_position_embeddings = top;
    if (r.original_max_position_embeddings == 0) r.original_max_position_embeddings = c.max_position_embeddings;
    if (r.rope_type == "yarn" && r.factor == 0) {
      if (r.original_max_position_embeddings <= 0) fail("config", "yarn needs original_max_position_embeddings > 0");
      r.factor = static_cast<float>(c.max_position_embeddings) / r.original_max_position_embeddings;
    }
    if (r.rope_type == "longrope") {
      if (r.original_max_position_embeddings <= 0)
        fail("config", "longrope needs original_max_position_embeddings > 0");
      if (r.factor == 0) r.factor = static_cast<float>(c.max_position_embeddings) / r.original_max_position_embeddings;
      const size_t half = static_cast<size_t>(c.head_dim * c.partial_rotary_factor) / 2;
      if (r.short_factor.size() != half || r.long_factor.size() != half)
        fail("config", "longrope short_factor and long_factor must each hold " + std::to_string(half) +
                           " values (rotary dims / 2)");
      for (auto* v : {&r.short_factor, &r.long_factor})
        for (float x : *v)
          if (!std::isfinite(x) || x <= 0) fail("config", "longrope factors must be finite and positive");
    }
  }
  if (c.llama4_scaling_beta && c.rope_scaling)
    c.llama4_scaling_positions = c.rope_scaling->original_max_position_embeddings;
  // Only PhimoeRotaryEmbedding reads short_mscale / long_mscale (transformers ignores them elsewhere), and it needs
  // both with any scaling: of those, mlxgp runs longrope (Phi-3.5-MoE's).
  if (c.rope_scaling && c.model_type == "phimoe") {
    if (c.rope_scaling->rope_type != "longrope")
      fail("config", "phimoe's rope scaling '" + c.rope_scaling->rope_type + "' is not supported (only longrope)");
    if (!c.rope_scaling->short_mscale || !c.rope_scaling->long_mscale)
      fail("config", "phimoe's longrope needs short_mscale and long_mscale (numbers)");
  } else if (c.rope_scaling) {
    c.rope_scaling->short_mscale.reset();
    c.rope_scaling->long_mscale.reset();
  }
}

// An optional number: `absent` when the key is missing (the config class's default), none when it is null.
std::optional<float> get_opt_float(const json& j, const char* key, std::optional<float> absent = std::nullopt) {
  auto it = j.find(key);
  if (it == j.end()) return absent;
  if (it->is_null()) return std::nullopt;
  return get_float(j, key, 0.0f);
}

// Llama4TextConfig (Llama 4 Scout / Maverick's language model): NoPE layers (no_rope_layers, by default every
// no_rope_layer_interval-th), chunked attention on the others (layer_types, by default the rotary layers when
// attention_chunk_size is set), weightless q/k norms on the rotary layers (use_qk_norm), the query temperature on the
// NoPE ones (attn_temperature_tuning), and mixture-of-experts layers (moe_layers, by default every
// interleave_moe_layer_step-th) of num_local_experts experts as wide as intermediate_size beside one shared expert,
// the dense layers intermediate_size_mlp wide.
void parse_llama4(const json& j, ModelConfig& c) {
  const int n = c.num_hidden_layers;
  c.use_qk_norm = get_bool(j, "use_qk_norm", true);
  // (Llama4TextConfig takes an empty list for its default, and a list at least as long as the layers.)
  if (auto it = j.find("no_rope_layers"); it != j.end() && !it->is_null() && !(it->is_array() && it->empty())) {
    if (!it->is_array() || static_cast<int>(it->size()) < n)
      fail("config", "no_rope_layers must list at least one entry per layer");
    for (int i = 0; i < n; ++i) {
      const auto& e = (*it)[i];
      if (!e.is_number_integer() || (e.get<long long>() != 0 && e.get<long long>() != 1))
        fail("config", "no_rope_layers entries must be 0 or 1");
      c.rope_layers.push_back(e.get<long long>() == 1);
    }
  } else {
    const int interval = get_int(j, "no_rope_layer_interval", 4);
    if (interval < 1) fail("config", "no_rope_layer_interval must be at least 1");
    for (int i = 0; i < n; ++i) c.rope_layers.push_back((i + 1) % interval != 0);
  }
  c.attention_chunk_size = j.contains("attention_chunk_size") ? get_opt_int(j, "attention_chunk_size") : 8192;
  if (c.attention_chunk_size && *c.attention_chunk_size < 1) fail("config", "attention_chunk_size must be at least 1");
  if (auto types = j.find("layer_types"); types != j.end() && !types->is_null()) {
    if (!types->is_array() || static_cast<int>(types->size()) != n)
      fail("config", "layer_types must list one entry per layer");
    for (auto& e : *types) {
      const auto t = e.is_string() ? e.get<std::string>() : std::string();
      if (t != "chunked_attention" && t != "full_attention")
        fail("config", "unsupported layer type " + e.dump() + " (supported: full_attention, chunked_attention)");
      c.chunked_layers.push_back(t == "chunked_attention");
    }
  } else if (c.attention_chunk_size) {
    c.chunked_layers = c.rope_layers;
  }
  if (!c.attention_chunk_size &&
      std::find(c.chunked_layers.begin(), c.chunked_layers.end(), true) != c.chunked_layers.end())
    fail("config", "chunked_attention layers need an attention_chunk_size");
  // (mlx-lm writes the switch as a number, 4: any nonzero one turns it on; null, as transformers reads None, not.)
  bool tuning = true;
  if (auto it = j.find("attn_temperature_tuning"); it != j.end()) {
    if (it->is_boolean()) tuning = it->get<bool>();
    else if (it->is_number()) tuning = it->get<double>() != 0;
    else if (it->is_null()) tuning = false;
    else fail("config", "attn_temperature_tuning must be true or false");
  }
  if (tuning) {
    c.llama4_scaling_beta = get_float(j, "attn_scale", 0.1f);
    c.llama4_scaling_positions = get_int(j, "floor_scale", 8192);
    c.llama4_scaling_nope = true;
    if (!std::isfinite(*c.llama4_scaling_beta)) fail("config", "attn_scale must be finite");
    if (c.llama4_scaling_positions < 1) fail("config", "floor_scale must be at least 1");
  }
  c.num_experts = get_int(j, "num_local_experts", 16);
  c.num_experts_per_tok = get_int(j, "num_experts_per_tok", 1);
  if (c.num_experts < 1) fail("config", "num_local_experts must be at least 1");
  if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.num_experts)
    fail("config", "num_experts_per_tok must be in [1, num_experts]");
  c.moe_intermediate_size = c.shared_expert_intermediate_size = c.intermediate_size;
  c.intermediate_size = get_int(j, "intermediate_size_mlp", 16384);
  if (c.intermediate_size <= 0) fail("config", "intermediate_size_mlp must be positive");
  c.llama4_routing = true;
  if (auto it = j.find("moe_layers"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) fail("config", "moe_layers must be a list of layer indices");
    std::vector<bool> sparse(n, false);
    for (auto& e : *it) {
      const int l = int_entry(e, "moe_layers must be a list of layer indices");
      if (l >= 0 && l < n) sparse[l] = true;
    }
    for (int i = 0; i < n; ++i)
      if (!sparse[i]) c.mlp_only_layers.push_back(i);
  } else {  // range(step - 1, layers, step): (i + 1) % step == 0
    c.decoder_sparse_step = get_int(j, "interleave_moe_layer_step", 1);
    if (c.decoder_sparse_step < 1) fail("config", "interleave_moe_layer_step must be at least 1");
  }
  // Llama4ForCausalLM adds no load-balancing loss, and its router has no jitter.
  c.output_router_logits = false;
}

// Fields of gemma2/gemma3 (scale, soft-capping), granite (multipliers) and smollm3 (layers without RoPE),
// read only for the architectures whose transformers code reads them (5.24's modeling_*.py: a llama config
// carrying final_logit_softcapping is not capped there), with their config classes' defaults. Options that
// change the math and that mlxgp does not implement are refused by name.
void parse_architecture_fields(const json& j, ModelConfig& c) {
  const std::string& t = c.model_type;
  if (t == "gemma2" || t == "gemma3_text") {  // Gemma2Config / Gemma3TextConfig: 256, caps 50 / 30 (gemma2)
    c.query_pre_attn_scalar = get_opt_float(j, "query_pre_attn_scalar", 256.0f);
    c.final_logit_softcapping =
        get_opt_float(j, "final_logit_softcapping", t == "gemma2" ? std::optional(30.0f) : std::nullopt);
  }
  // Gemma 3's attention stores attn_logit_softcapping but never applies it.
  if (t == "gemma2") c.attn_logit_softcapping = get_opt_float(j, "attn_logit_softcapping", 50.0f);
  // GraniteConfig / GraniteMoeConfig: every multiplier 1.0 (attention_multiplier too, not head_dim^-0.5)
  if (t == "granite" || t == "granitemoe") {
    c.embedding_multiplier = get_float(j, "embedding_multiplier", 1.0f);
    c.residual_multiplier = get_float(j, "residual_multiplier", 1.0f);
    c.logits_scaling = get_float(j, "logits_scaling", 1.0f);
    c.attention_multiplier = get_float(j, "attention_multiplier", 1.0f);
  }
  if (t == "glm4_moe") c.use_qk_norm = get_bool(j, "use_qk_norm", false);
  if (t == "cohere" || t == "cohere2") {  // CohereConfig / Cohere2Config: logits x 0.0625
    c.logit_scale = get_float(j, "logit_scale", 0.0625f);
    c.use_qk_norm = t == "cohere" && get_bool(j, "use_qk_norm", false);
  }
  // Cohere2Attention rotates only on its sliding-window layers (none without a window); Exaone4Attention too when
  // there is a window (its global layers are NoPE), and on every layer without one.
  if (t == "cohere2" || (t == "exaone4" && c.sliding_window)) {
    c.rope_layers.assign(c.num_hidden_layers, false);
    for (size_t i = 0; i < c.sliding_layers.size() && i < c.rope_layers.size(); ++i)
      c.rope_layers[i] = c.sliding_layers[i];
  }
  if (t == "stablelm") {  // StableLmConfig: per-head bias-free q/k LayerNorms, one norm for parallel blocks
    c.use_qk_norm = get_bool(j, "qk_layernorm", false);
    c.parallel_residual = get_bool(j, "use_parallel_residual", false);
  }
  if (t == "gpt_neox") c.parallel_residual = get_bool(j, "use_parallel_residual", true);  // GPTNeoXConfig
  // Apertus's original configs carry qk_norm, post_norm and mlp_bias, which transformers' Apertus never reads (q/k
  // norms always, pre-norm blocks, bias-free MLP): another value would not run as written, so it is refused.
  if (t == "apertus") {
    if (!get_bool(j, "qk_norm", true)) fail("config", "qk_norm false is not supported (Apertus always norms q and k)");
    if (get_bool(j, "post_norm", false))
      fail("config", "post_norm true is not supported (Apertus's blocks are pre-norm)");
    if (c.mlp_bias) fail("config", "mlp_bias true is not supported (Apertus's MLP has no biases)");
  }
  for (auto [name, v] : {std::pair{"query_pre_attn_scalar", c.query_pre_attn_scalar},
                         {"attn_logit_softcapping", c.attn_logit_softcapping},
                         {"final_logit_softcapping", c.final_logit_softcapping},
                         {"attention_multiplier", c.attention_multiplier},
                         {"embedding_multiplier", std::optional<float>(c.embedding_multiplier)},
                         {"residual_multiplier", std::optional<float>(c.residual_multiplier)},
                         {"logits_scaling", std::optional<float>(c.logits_scaling)},
                         {"logit_scale", c.logit_scale}})
    if (v && !(std::isfinite(*v) && *v > 0))
      fail("config", std::string("field '") + name + "' must be a finite number > 0, got " + number_text(*v));
  if (auto it = j.find("no_rope_layers"); t == "smollm3" && it != j.end() && !it->is_null()) {
    if (!it->is_array() || static_cast<int>(it->size()) != c.num_hidden_layers)
      fail("config", "no_rope_layers must list one entry per layer");
    for (auto& e : *it) {
      if (!e.is_number_integer() || (e.get<long long>() != 0 && e.get<long long>() != 1))
        fail("config", "no_rope_layers entries must be 0 or 1");
      c.rope_layers.push_back(e.get<long long>() == 1);
    }
  } else if (t == "smollm3") {  // SmolLM3Config's default: every interval-th layer has no RoPE
    const int interval = get_int(j, "no_rope_layer_interval", 4);
    if (interval < 1) fail("config", "no_rope_layer_interval must be at least 1");
    for (int i = 0; i < c.num_hidden_layers; ++i) c.rope_layers.push_back((i + 1) % interval != 0);
  }
  // Qwen2MoeConfig's switch; qwen2's biases are always on, and other configs carrying it are not read.
  if (auto it = j.find("qkv_bias"); t == "qwen2_moe" && it != j.end() && !it->is_null())
    c.qkv_bias = get_bool(j, "qkv_bias", true);
  // The expert fields and their class defaults (MixtralConfig 8 x top-2; Qwen2MoeConfig 60 x top-4,
  // widths 1408 / shared 5632; Qwen3MoeConfig 128 x top-8, width 768).
  const bool mixtral = t == "mixtral", qwen2_moe = t == "qwen2_moe", qwen3_moe = t == "qwen3_moe";
  // PhimoeConfig: 16 x top-2 as wide as intermediate_size, routed by sparsemixer (below).
  const bool phimoe = t == "phimoe";
  // Ernie4_5_MoeConfig (ERNIE-4.5-21B-A3B / 300B-A47B): moe_num_experts 64 x moe_k 6 of width 1536 beside
  // moe_num_shared_experts 2 ungated shared ones; the layers from moe_layer_start_index 1 to moe_layer_end_index
  // (-1: the last) at every moe_layer_interval-th sparse, the others dense; a float32 softmax router whose choice adds
  // moe_statics.e_score_correction_bias, the chosen probabilities divided by max(their sum, moe_norm_min).
  const bool ernie_moe = t == "ernie4_5_moe";
  if (ernie_moe) {
    c.num_experts = get_int(j, "moe_num_experts", get_int(j, "num_experts", 64));
    if (c.num_experts < 1) fail("config", "moe_num_experts must be at least 1");
  }
  const bool gpt_oss = t == "gpt_oss";    // GptOssConfig: 128 x top-4, experts as wide as intermediate_size
  const bool olmoe = t == "olmoe";        // OlmoeConfig: 64 x top-8, experts as wide as intermediate_size
  const bool glm4_moe = t == "glm4_moe";  // Glm4MoeConfig: 128 x top-8 of width 1408, sigmoid routing
  // DeepseekV2Config: 64 routed experts of width 1407 (top-k required), 2 shared, softmax routing; DeepseekV3Config:
  // 256 x top-8 of width 2048, 1 shared, glm4_moe's sigmoid routing (which Glm4MoeConfig took from it);
  // Glm4MoeLiteConfig (GLM-4.7-Flash: V3's latent attention, glm4_moe's experts): 64 x top-4 of width 1536, x 1.8.
  const bool deepseek_v2 = t == "deepseek_v2", glm_lite = t == "glm4_moe_lite";
  const bool deepseek_v3 = t == "deepseek_v3" || glm_lite;  // (the same routing)
  const bool deepseek = deepseek_v2 || deepseek_v3;
  // Dots1Config (dots.llm1: qwen3's attention, V3's experts): routed and shared experts and top-k required (no
  // defaults), width 1408, sigmoid routing in 1 group, unnormalised, x 1, every layer sparse unless first_k_dense.
  const bool dots1 = t == "dots1";
  // HunYuanMoEV1Config (Hunyuan-A13B): num_experts (default 1) x moe_topk (1) as wide as intermediate_size, every layer
  // sparse beside an ungated shared_mlp as wide; a float32 softmax router (gate.wg), the top-k renormalised. Per-layer
  // lists are read when every layer has the same value (transformers indexes them by layer).
  const bool hunyuan_moe = t == "hunyuan_v1_moe";
  auto uniform = [&](const char* key, int def) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_array()) return get_int(j, key, def);
    if (it->empty()) fail("config", std::string("field '") + key + "' must not be an empty list");
    json one = {{key, it->front()}};
    const int v = get_int(one, key, def);
    for (auto& e : *it)
      if (e != it->front())
        fail("config", std::string("field '") + key + "' differs between layers, which mlxgp does not support");
    return v;
  };
  if (hunyuan_moe) {
    c.num_experts = uniform("num_experts", 1);
    if (c.num_experts < 1) fail("config", "num_experts must be at least 1");
  }
  // GraniteMoeConfig: 8 x top-2 as wide as intermediate_size, a softmax over the top-k logits, every layer sparse
  const bool granitemoe = t == "granitemoe";
  // (transformers 5 names the count num_local_experts for every one of them; older configs num_experts,
  // glm4_moe's n_routed_experts)
  if (mixtral || qwen2_moe || qwen3_moe || gpt_oss || olmoe || granitemoe || phimoe)
    c.num_experts = get_int(j, "num_local_experts",
                            get_int(j, "num_experts",
                                    mixtral || granitemoe ? 8
                                    : phimoe              ? 16
                                    : qwen2_moe           ? 60
                                    : olmoe               ? 64
                                                          : 128));
  if (dots1)
    for (const char* key : {"n_routed_experts", "num_experts_per_tok", "n_shared_experts"})
      if (!j.contains(key) || j.at(key).is_null())
        fail("config", std::string(key) + " is required (Dots1Config has no default)");
  if (glm4_moe || deepseek || dots1)
    c.num_experts = get_int(j, "num_local_experts",
                            get_int(j, "n_routed_experts",
                                    deepseek_v2 || glm_lite ? 64
                                    : deepseek_v3           ? 256
                                                            : 128));
  if (c.num_experts > 0) {
    if (deepseek_v2 && !j.contains("num_experts_per_tok"))
      fail("config", "num_experts_per_tok is required (DeepseekV2Config has no default)");
    c.num_experts_per_tok = hunyuan_moe ? uniform("moe_topk", 1)
                                        : get_int(j, ernie_moe ? "moe_k" : "num_experts_per_tok",
                                                  mixtral || granitemoe || phimoe    ? 2
                                                  : qwen2_moe || gpt_oss || glm_lite ? 4
                                                  : ernie_moe                        ? 6
                                                                                     : 8);
    if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.num_experts)
      fail("config", "num_experts_per_tok must be in [1, num_experts]");
    c.moe_intermediate_size = mixtral || gpt_oss || olmoe || granitemoe || phimoe || hunyuan_moe
                                  ? c.intermediate_size
                                  : get_int(j, "moe_intermediate_size",
                                            qwen2_moe || glm4_moe || dots1 ? 1408
                                            : deepseek_v2                  ? 1407
                                            : glm_lite || ernie_moe        ? 1536
                                            : deepseek_v3                  ? 2048
                                                                           : 768);
    c.shared_expert_intermediate_size = qwen2_moe ? get_int(j, "shared_expert_intermediate_size", 5632) : 0;
    if (glm4_moe || deepseek || dots1 || ernie_moe) {
      const char* key = ernie_moe ? "moe_num_shared_experts" : "n_shared_experts";
      const int shared = get_int(j, key, deepseek_v2 || ernie_moe ? 2 : 1);
      if (shared < 0) fail("config", std::string(key) + " must be >= 0");
      c.shared_expert_intermediate_size = c.moe_intermediate_size * shared;
    }
    if (hunyuan_moe) c.shared_expert_intermediate_size = c.intermediate_size;
    if (ernie_moe) {
      c.softmax_score_bias = true;
      c.moe_norm_min = get_float(j, "moe_norm_min", 1e-12f);
      if (!(std::isfinite(c.moe_norm_min) && c.moe_norm_min >= 0))
        fail("config", "moe_norm_min must be a finite number >= 0");
    }
    if (glm4_moe || deepseek_v3 || dots1) {
      c.sigmoid_routing = true;
      const bool v3 = t == "deepseek_v3";
      parse_group_routing(j, c, v3 ? 8 : 1, v3 ? 4 : 1, v3 ? 2.5f : glm_lite ? 1.8f : 1.0f);
    }
    if (deepseek_v2) {  // DeepseekV2TopkRouter: topk_method "greedy" (plain top-k) or "group_limited_greedy"
      const std::string method = j.contains("topk_method") && j.at("topk_method").is_string()
                                     ? j.at("topk_method").get<std::string>()
                                     : "greedy";
      if (method != "greedy" && method != "group_limited_greedy")
        fail("config", "unsupported topk_method '" + method + "' (supported: greedy, group_limited_greedy)");
      c.group_limited_greedy = method == "group_limited_greedy";
      if (c.group_limited_greedy) {
        // The groups are scored by their best expert, so one expert a group is enough here.
        parse_group_routing(j, c, 1, 1, 1.0f);
      } else {
        c.routed_scaling_factor = get_float(j, "routed_scaling_factor", 1.0f);
        if (!(std::isfinite(c.routed_scaling_factor) && c.routed_scaling_factor > 0))
          fail("config", "routed_scaling_factor must be a finite number > 0");
      }
      // transformers' DeepseekV2TopkRouter never renormalises (the original code did with norm_topk_prob): a
      // config asking for it would get different weights from the two, so it is refused rather than guessed.
      if (get_bool(j, "norm_topk_prob", false))
        fail("config", "norm_topk_prob true is not supported for deepseek_v2 (transformers' router ignores it)");
      if (get_int(j, "moe_layer_freq", 1) != 1) fail("config", "moe_layer_freq other than 1 is not supported");
    }
    // gpt_oss: a softmax over the top-k router logits, i.e. the top-k probabilities renormalised.
    c.norm_topk_prob =
        gpt_oss || granitemoe || ernie_moe || hunyuan_moe ||
        (!deepseek_v2 && get_bool(j, "norm_topk_prob", c.model_type == "mixtral" || glm4_moe || deepseek_v3));
    if (gpt_oss) {
      c.swiglu_alpha = get_float(j, "swiglu_alpha", 1.702f);
      c.swiglu_limit = get_float(j, "swiglu_limit", 7.0f);
      if (!std::isfinite(c.swiglu_alpha) || !std::isfinite(c.swiglu_limit) || c.swiglu_limit <= 0)
        fail("config", "swiglu_alpha must be finite and swiglu_limit finite and positive");
    }
    // (GptOssConfig, OlmoeConfig and GraniteMoeConfig have no dense layers: every one is sparse whatever these say.)
    c.decoder_sparse_step = gpt_oss || olmoe || granitemoe || hunyuan_moe ? 1
                            : ernie_moe                                   ? get_int(j, "moe_layer_interval", 1)
                                                                          : get_int(j, "decoder_sparse_step", 1);
    if (c.decoder_sparse_step < 1)
      fail("config", std::string(ernie_moe ? "moe_layer_interval" : "decoder_sparse_step") + " must be at least 1");
    if (ernie_moe) {  // the layers outside [moe_layer_start_index, moe_layer_end_index] are dense
      const int first = get_int(j, "moe_layer_start_index", 1);
      int last = c.num_hidden_layers - 1;  // -1 (the class default) or null: the last layer
      if (auto it = j.find("moe_layer_end_index"); it != j.end() && !(it->is_number_integer() && *it == -1))
        last = get_int(j, "moe_layer_end_index", last);
      // transformers ignores moe_gate_act (always softmax); mlx-lm's ModelArgs can say sigmoid.
      if (auto it = j.find("moe_gate_act"); it != j.end() && !it->is_null() && *it != "softmax")
        fail("config",
             "moe_gate_act other than softmax is not supported (transformers' Ernie4_5_Moe routes by "
             "softmax)");
      for (int i = 0; i < c.num_hidden_layers; ++i)
        if (i < first || i > last) c.mlp_only_layers.push_back(i);
    }
    if (glm_lite) {
      parse_mlp_layer_types(j, c);
    } else if (glm4_moe || deepseek || dots1) {  // the first first_k_dense_replace layers are dense
      const int dense = get_int(j, "first_k_dense_replace", deepseek_v2 || dots1 ? 0 : deepseek_v3 ? 3 : 1);
      if (dense < 0) fail("config", "first_k_dense_replace must be >= 0");
      for (int i = 0; i < dense && i < c.num_hidden_layers; ++i) c.mlp_only_layers.push_back(i);
    }
    if (auto it = j.find("mlp_only_layers"); !gpt_oss && !olmoe && !glm4_moe && !deepseek && !dots1 && !granitemoe &&
                                             !ernie_moe && !hunyuan_moe && it != j.end() && !it->is_null()) {
      if (!it->is_array()) fail("config", "mlp_only_layers must be a list of layer indices");
      for (auto& e : *it) {
        c.mlp_only_layers.push_back(int_entry(e, "mlp_only_layers must be a list of layer indices"));
      }
    }
    if (c.moe_intermediate_size <= 0) fail("config", "moe_intermediate_size must be positive");
    // Glm4MoeForCausalLM, DeepseekV2/V3ForCausalLM and Dots1ForCausalLM add no load-balancing loss whatever
    // output_router_logits says.
    c.output_router_logits = !glm4_moe && !deepseek && !dots1 && get_bool(j, "output_router_logits", false);
    c.router_aux_loss_coef = get_double(j, "router_aux_loss_coef", olmoe ? 0.01 : 0.001);
    if (!std::isfinite(c.router_aux_loss_coef)) fail("config", "router_aux_loss_coef must be a finite number");
    // Only MixtralSparseMoeBlock reads it; the qwen MoE blocks have no jitter.
    if (c.model_type == "mixtral") c.router_jitter_noise = get_double(j, "router_jitter_noise", 0.0);
    if (phimoe) {
      // sparsemixer picks two experts whatever num_experts_per_tok says (its top_k is unused): another count
      // would not run as the config reads, so it is refused. Its threshold is router_jitter_noise.
      if (c.num_experts_per_tok != 2 || c.num_experts < 2)
        fail("config", "phimoe routes exactly 2 experts a token (sparsemixer): num_experts_per_tok must be 2");
      c.sparsemixer = true;
      c.router_jitter_noise = get_double(j, "router_jitter_noise", 0.01);
      if (!(std::isfinite(c.router_jitter_noise) && c.router_jitter_noise >= 0))
        fail("config", "router_jitter_noise must be a finite number >= 0");
    }
  }
  // The dropout rates transformers' decoder modules read (GPT2's three, Phi3's, StarCoder2's, the
  // attention_dropout of the llama family).
  for (const char* key : {"attention_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop", "residual_dropout",
                          "embedding_dropout", "hidden_dropout", "mlp_dropout"}) {
    const double v = get_double(j, key, 0.0);
    if (!std::isfinite(v) || v < 0 || v >= 1) fail("config", std::string("field '") + key + "' must be in [0, 1)");
    if (v > c.dropout) {
      c.dropout = v;
      c.dropout_key = key;
    }
  }
  if (t == "llama4_text") parse_llama4(j, c);
  if (get_bool(j, "use_bidirectional_attention", false))
    fail("config", "use_bidirectional_attention is not supported (causal attention only)");
  if (auto it = j.find("clip_qkv"); it != j.end() && !it->is_null()) {
    // OlmoConfig's and OlmoeConfig's field (transformers' other decoders never read it: refused there).
    if (t != "olmo" && t != "olmoe") fail("config", "clip_qkv is not supported for " + t + " (only olmo and olmoe)");
    const double v = get_double(j, "clip_qkv", 0.0);
    if (!(std::isfinite(v) && v > 0)) fail("config", "clip_qkv must be a finite number > 0");
    c.clip_qkv = static_cast<float>(v);
  }
  // OlmoLayerNorm's epsilon is fixed (OlmoConfig has no field for it).
  if (t == "olmo") c.rms_norm_eps = 1e-5f;
  if (c.model_type == "phi" && get_bool(j, "qk_layernorm", false))
    fail("config", "qk_layernorm is not supported (phi's LayerNorms over each head's q and k)");
  if (t == "gemma4_text") io::read_gemma4_fields(j, c);
}

}  // namespace

std::optional<std::pair<int, int>> quantization_mode_defaults(const std::string& mode) {
  if (mode == "affine") return std::pair{64, 4};
  if (mode == "mxfp4") return std::pair{32, 4};
  if (mode == "mxfp8") return std::pair{32, 8};
  if (mode == "nvfp4") return std::pair{16, 4};
  return std::nullopt;
}

void validate_model_config(const ModelConfig& c, const std::string& component) {
  auto positive_int = [&](const char* name, long long v) {
    if (v <= 0)
      fail(component, std::string("field '") + name + "' must be a positive integer, got " + std::to_string(v));
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
  const bool rotary =
      c.rope_layers.empty() || std::find(c.rope_layers.begin(), c.rope_layers.end(), true) != c.rope_layers.end();
  if (rotary && c.head_dim % 2 != 0) fail(component, "head_dim must be even for rotary embeddings");
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
  for (const auto* v : {&c.conv_layers, &c.linear_layers})
    if (!v->empty() && static_cast<long long>(v->size()) != c.num_hidden_layers)
      fail(component, "layer_types must list one entry per layer");
  for (const auto* v : {&c.layer_head_dims, &c.layer_kv_heads})
    if (!v->empty() && static_cast<long long>(v->size()) != c.num_hidden_layers)
      fail(component, "per-layer head widths must list one entry per layer");
}

int layer_head_dim(const ModelConfig& c, int layer) {
  return layer >= 0 && layer < static_cast<int>(c.layer_head_dims.size()) ? c.layer_head_dims[layer] : c.head_dim;
}

std::string recurrent_layer_kind(const ModelConfig& c) {
  const auto any = [](const std::vector<bool>& v) { return std::find(v.begin(), v.end(), true) != v.end(); };
  return any(c.linear_layers) ? "gated delta nets" : any(c.conv_layers) ? "short convolutions" : "recurrent layers";
}

bool layer_slides(const ModelConfig& c, int layer) {
  return layer >= 0 && layer < static_cast<int>(c.sliding_layers.size()) && c.sliding_layers[layer];
}

int layer_kv_heads(const ModelConfig& c, int layer) {
  return layer >= 0 && layer < static_cast<int>(c.layer_kv_heads.size()) ? c.layer_kv_heads[layer]
                                                                         : c.num_key_value_heads;
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
  if (io::is_multimodal_wrapper(c.model_type)) {  // its language model; the vision tower is not read
    ModelConfig text = parse_model_config(io::language_model_config(j).dump());
    text.multimodal_model_type = c.model_type;
    // transformers 5.24's Gemma3ForConditionalGeneration never applies text_config's final_logit_softcapping
    // (only Gemma3ForCausalLM does; mlx-lm's gemma3 neither).
    if (c.model_type == "gemma3") text.final_logit_softcapping.reset();
    if (c.model_type == "gemma4") {  // Gemma4Config's placeholder ids and their defaults
      text.multimodal_token_ids = {get_int(j, "image_token_id", 258880), get_int(j, "video_token_id", 258884),
                                   get_int(j, "audio_token_id", 258881)};
      text.multimodal_pad_id = text.pad_token_id.value_or(0);
      if (text.multimodal_pad_id < 0 || text.multimodal_pad_id >= text.vocab_size)
        fail("config", "text_config.pad_token_id must be a token id");
    }
    return text;
  }
  if (c.model_type == "gpt2" || c.model_type == "gpt_bigcode") j = io::gpt2_common_fields(j);
  if (c.model_type == "gemma4_text") j = io::gemma4_common_fields(j);
  if (c.model_type == "lfm2" || c.model_type == "lfm2_moe") j = io::lfm2_common_fields(j);
  if (io::is_qwen3_next_type(c.model_type)) j = io::qwen3_next_common_fields(j);
  io::apply_class_defaults(c);
  c.vocab_size = get_int(j, "vocab_size", 0, true);
  c.hidden_size = get_int(j, "hidden_size", 0, true);
  c.intermediate_size = get_int(j, "intermediate_size", 0, true);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", 0, true);
  c.num_attention_heads = get_int(j, "num_attention_heads", 0, true);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", 0);
  if (c.num_key_value_heads == 0) c.num_key_value_heads = c.num_attention_heads;
  // Cohere2Config sets head_dim to hidden_size / num_attention_heads whatever config.json says.
  c.head_dim = c.model_type == "cohere2" ? 0 : get_int(j, "head_dim", c.head_dim);
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_hidden_layers <= 0 ||
      c.num_attention_heads <= 0)
    fail("config",
         "vocab_size, hidden_size, intermediate_size, num_hidden_layers and num_attention_heads "
         "must be positive");
  if (c.head_dim == 0) {
    if (c.hidden_size % c.num_attention_heads != 0)
      fail("config", "hidden_size is not divisible by num_attention_heads");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail("config", "num_attention_heads must be a multiple of num_key_value_heads");
  c.rms_norm_eps = get_float(j, "rms_norm_eps", c.rms_norm_eps);
  c.rms_norm_eps = get_float(j, "norm_epsilon", c.rms_norm_eps);  // starcoder2's LayerNorm epsilon
  if (c.model_type == "nemotron") c.rms_norm_eps = get_float(j, "norm_eps", c.rms_norm_eps);  // NemotronConfig's
  // cohere's, phi's, stablelm's and gpt_neox's LayerNorms read layer_norm_eps (and not rms_norm_eps).
  if (c.model_type == "cohere" || c.model_type == "cohere2" || c.model_type == "phi" || c.model_type == "stablelm" ||
      c.model_type == "gpt_neox")
    c.rms_norm_eps = get_float(j, "layer_norm_eps", c.rms_norm_eps);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", c.max_position_embeddings);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", c.tie_word_embeddings);
  c.attention_bias = get_bool(j, "attention_bias", c.model_type == "gpt_oss" || c.model_type == "gpt_neox");
  c.mlp_bias = get_bool(j, "mlp_bias", c.mlp_bias);
  if (c.model_type == "phimoe") c.lm_head_bias = get_bool(j, "lm_head_bias", false);
  // starcoder2: use_bias (Starcoder2Config's default: true) puts a bias on every linear.
  if (c.model_type == "starcoder2") c.attention_bias = c.mlp_bias = get_bool(j, "use_bias", true);
  // GPTNeoXConfig: attention_bias (default true) on query_key_value and dense; the MLP always has biases.
  if (c.model_type == "gpt_neox") c.mlp_bias = true;
  // Ernie4_5Config: use_bias (default false) on every linear.
  if (c.model_type == "ernie4_5") c.attention_bias = c.mlp_bias = get_bool(j, "use_bias", false);
  // Ernie4_5_MoeConfig: use_bias also on the (tied) head; the routed experts never have one.
  if (c.model_type == "ernie4_5_moe") c.attention_bias = c.mlp_bias = c.lm_head_bias = get_bool(j, "use_bias", false);
  // StableLmConfig: use_qkv_bias on q / k / v only; its o_proj and MLP never have one.
  if (c.model_type == "stablelm") {
    c.qkv_bias = get_bool(j, "use_qkv_bias", false);
    c.attention_bias = c.mlp_bias = false;
  }
  // HeliumConfig: attention_bias on q / k / v only. HunYuanDenseV1Config: attention_bias on all four, no MLP biases.
  if (c.model_type == "helium") {
    c.qkv_bias = c.attention_bias;
    c.attention_bias = false;
  }
  if (c.model_type == "hunyuan_v1_dense" || c.model_type == "hunyuan_v1_moe") c.mlp_bias = false;
  // SeedOssConfig: attention_bias (default true) on q / k / v, attention_out_bias (default false) on o_proj.
  if (c.model_type == "seed_oss") {
    c.qkv_bias = get_bool(j, "attention_bias", true);
    c.attention_bias = get_bool(j, "attention_out_bias", false);
  }
  // PhiConfig: every projection has a bias (no switch).
  if (c.model_type == "phi") c.attention_bias = c.mlp_bias = true;
  // GlmConfig / Glm4Config (default true) / Glm4MoeConfig (false): attention_bias puts biases on q / k / v only,
  // never on o_proj.
  if (c.model_type == "glm" || c.model_type == "glm4" || c.model_type == "glm4_moe") {
    c.qkv_bias = get_bool(j, "attention_bias", c.model_type != "glm4_moe");
    c.attention_bias = false;
  }
  parse_sliding_layers(j, c);
  if (auto it = j.find("hidden_act"); it != j.end() && it->is_string()) c.hidden_act = *it;
  // gemma2/gemma3 name it hidden_activation (transformers reads only that one for them).
  if (auto it = j.find("hidden_activation"); it != j.end() && it->is_string()) c.hidden_act = *it;
  c.bos_token_id = get_opt_int(j, "bos_token_id");
  c.pad_token_id = get_opt_int(j, "pad_token_id");
  if (auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    if (it->is_array()) {
      for (auto& e : *it) c.eos_token_id.push_back(int_entry(e, "eos_token_id entries must be integers"));
    } else if (it->is_number_integer()) {
      c.eos_token_id.push_back(int_entry(*it, "eos_token_id must be an integer"));
    } else {
      fail("config", "eos_token_id must be an integer or a list of integers");
    }
  }
  parse_rope_fields(j, c);
  // ApertusConfig without any rope field: Llama-3 scaling x8 over 8192 positions (base 12e6, its class default).
  if (c.model_type == "apertus" && !j.contains("rope_parameters") && !j.contains("rope_scaling") &&
      !j.contains("rope_theta")) {
    RopeScaling r;
    r.rope_type = "llama3";
    r.factor = 8.0f;
    c.rope_scaling = r;
  }
  parse_architecture_fields(j, c);
  if (c.model_type == "lfm2" || c.model_type == "lfm2_moe") io::read_lfm2_fields(j, c);
  if (io::is_qwen3_next_type(c.model_type)) io::read_qwen3_next_fields(j, c);
  if (c.model_type == "deepseek_v2" || c.model_type == "deepseek_v3" || c.model_type == "glm4_moe_lite")
    parse_latent_attention(j, c);
  if (c.model_type == "gpt2" || c.model_type == "gpt_bigcode") {
    c.rope_layers.assign(c.num_hidden_layers, false);  // learned absolute positions instead of RoPE
    c.scale_attn_weights = get_bool(j, "scale_attn_weights", true);
    // GPTBigCodeConfig has no per-layer scaling (its attention reads only scale_attn_weights).
    if (c.model_type == "gpt2")
      c.scale_attn_by_inverse_layer_idx = get_bool(j, "scale_attn_by_inverse_layer_idx", false);
    // reorder_and_upcast_attn only changes the rounding of eager half-precision attention: accepted.
  }
  if (auto it = j.find("quantization"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) fail("config", "quantization must be an object");
    c.quantization = read_quantization(*it, "");
    module_entries(*it);  // checked here, read by the loader (io::quantization_modules)
  }
  validate_model_config(c, "config");
  return c;
}

namespace io {

std::map<std::string, QuantizationConfig> quantization_modules(const std::string& config_json) {
  auto j = json::parse(config_json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return {};
  auto it = j.find("quantization");
  if (it == j.end() || !it->is_object()) return {};
  return module_entries(*it);
}

}  // namespace io

}  // namespace mlxgp
