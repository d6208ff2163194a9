// io::language_model_config: multimodal_config.h.
#include "io/multimodal_config.h"

#include <algorithm>
#include <array>
#include <utility>

#include "mlxgp/error.h"

namespace mlxgp::io {

const std::vector<std::string>& multimodal_wrappers() {
  static const std::vector<std::string> types{"gemma3",     "gemma4",   "llama4",  "mistral3",   "qwen2_vl",
                                              "qwen2_5_vl", "qwen3_vl", "qwen3_5", "qwen3_5_moe"};
  return types;
}

bool is_multimodal_wrapper(const std::string& model_type) {
  const auto& types = multimodal_wrappers();
  return std::find(types.begin(), types.end(), model_type) != types.end();
}

namespace {

// Qwen2-VL / Qwen2.5-VL / Qwen3-VL: their text models are qwen2's / qwen3's decoders with multimodal RoPE, whose
// three position rows (time, height, width) are equal for text: the rotation is plain RoPE then, so only text runs
// here. The original uploads keep the text fields at the top level (no text_config) and label the rope "mrope".
nlohmann::json qwen_vl_text_config(const nlohmann::json& config, const std::string& outer) {
  using nlohmann::json;
  const std::string want = outer + "_text", decoder = outer == "qwen3_vl" ? "qwen3" : "qwen2";
  json t;
  if (auto tc = config.find("text_config"); tc != config.end() && tc->is_object()) {
    t = *tc;
    if (!t.contains("model_type")) t["model_type"] = want;
  } else {
    t = config;
    t.erase("vision_config");
    t["model_type"] = want;
  }
  if (t["model_type"] != want)
    fail("config", outer + "'s text_config has model_type " + t["model_type"].dump() + " (supported: " + want + ")");
  t["model_type"] = decoder;
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    auto r = t.find(key);
    if (r == t.end() || !r->is_object()) continue;
    const auto type = r->contains("rope_type") ? (*r)["rope_type"] : r->contains("type") ? (*r)["type"] : json();
    if (type == "mrope" || type == "default" || type.is_null()) {
      // (the sections only split equal positions for text)
      r->erase("mrope_section");
      r->erase("mrope_interleaved");
      r->erase("type");
      (*r)["rope_type"] = "default";
    }
  }
  return t;
}

}  // namespace

nlohmann::json language_model_config(const nlohmann::json& config) {
  using nlohmann::json;
  const std::string outer = config.at("model_type").get<std::string>();
  const bool qwen_vl = outer == "qwen2_vl" || outer == "qwen2_5_vl" || outer == "qwen3_vl";
  // Qwen3.5 (Qwen3_5Config / Qwen3_5MoeConfig): text_config a Qwen3_5TextConfig / Qwen3_5MoeTextConfig; a config
  // without one is the text config itself (as mlx-lm's ModelArgs reads it).
  const bool qwen3_5 = outer == "qwen3_5" || outer == "qwen3_5_moe";
  auto tc = config.find("text_config");
  const bool flat = qwen3_5 && tc == config.end();
  if (!qwen_vl && !flat && (tc == config.end() || !tc->is_object()))
    fail("config", outer + " config.json needs a text_config object (its language model's config)");
  json t = qwen_vl ? qwen_vl_text_config(config, outer) : flat ? config : *tc;
  if (flat) {
    t.erase("vision_config");
    t.erase("model_type");
  }
  const bool gemma = outer == "gemma3", gemma4 = outer == "gemma4", llama4 = outer == "llama4";
  // transformers 5.24: Gemma3Config's text_config is a Gemma3TextConfig, Llama4Config's a Llama4TextConfig,
  // Mistral3Config's a MistralConfig unless its model_type names another (mlx-lm's mistral3 runs the others as llama),
  // Gemma4Config's a Gemma4TextConfig. The one text model_type gemma3 / gemma4 / llama4 take (null: mistral3's
  // several).
  const char* own = gemma     ? "gemma3_text"
                    : gemma4  ? "gemma4_text"
                    : llama4  ? "llama4_text"
                    : qwen3_5 ? (outer == "qwen3_5" ? "qwen3_5_text" : "qwen3_5_moe_text")
                              : nullptr;
  if (!t.contains("model_type")) t["model_type"] = own ? own : "mistral";
  const auto& inner = t["model_type"];
  const bool known =
      qwen_vl ||
      (inner.is_string() && (own ? inner == own : (inner == "mistral" || inner == "ministral3" || inner == "llama")));
  if (!known)
    fail("config", outer + "'s text_config has model_type " + inner.dump() +
                       " (supported: " + (own ? own : "mistral, ministral3, llama") + ")");
  // The text config classes' sizes, which google/gemma-3-4b-it and larger rely on (configuration_gemma3.py,
  // configuration_gemma4.py).
  using Sizes = std::array<std::pair<const char*, int>, 6>;
  static const Sizes gemma3_sizes{{{"vocab_size", 262208},
                                   {"hidden_size", 2304},
                                   {"intermediate_size", 9216},
                                   {"num_hidden_layers", 26},
                                   {"num_attention_heads", 8},
                                   {"num_key_value_heads", 4}}};
  static const Sizes gemma4_sizes{{{"vocab_size", 262144},
                                   {"hidden_size", 2304},
                                   {"intermediate_size", 9216},
                                   {"num_hidden_layers", 30},
                                   {"num_attention_heads", 8},
                                   {"num_key_value_heads", 4}}};
  if (gemma || gemma4)
    for (auto [key, value] : gemma ? gemma3_sizes : gemma4_sizes)
      if (!t.contains(key) || t[key].is_null()) t[key] = value;
  // The outer config ties the head (PreTrainedConfig's default: true, Llama4Config's and Qwen3_5Config's false; a
  // checkpoint whose lm_head differs from the embeddings keeps it, as transformers' tie_weights does: DecoderModel).
  auto tie = config.find("tie_word_embeddings");
  if (tie != config.end() && !tie->is_null() && !tie->is_boolean())
    fail("config", "tie_word_embeddings must be true or false");
  t["tie_word_embeddings"] = tie == config.end() || tie->is_null() ? !llama4 && !qwen3_5 : tie->get<bool>();
  // GenerationConfig.from_model_config: the outer token ids, then text_config's where the outer has none.
  for (const char* key : {"eos_token_id", "bos_token_id", "pad_token_id"})
    if (auto it = config.find(key); it != config.end() && !it->is_null()) t[key] = *it;
  // mlx-lm writes its quantization block at the top.
  if (auto it = config.find("quantization"); it != config.end()) t["quantization"] = *it;
  return t;
}

}  // namespace mlxgp::io
