#include "generation/hf_fields.h"

#include <unordered_map>
#include <unordered_set>

namespace mlxgp {

namespace {

using nlohmann::json;

// transformers 5.x GenerationConfig attributes not implemented here, mapped to their neutral value
// (GenerationConfig._get_default_generation_params; null where HF has no default). null, the
// neutral value, and empty lists/objects count as "off".
const std::unordered_map<std::string, json>& unimplemented_fields() {
  static const std::unordered_map<std::string, json> kFields = {
      {"use_mtp", false},
      {"cache_implementation", nullptr},
      {"cache_config", nullptr},
      {"max_cache_len", nullptr},
      {"top_h", nullptr},
      {"encoder_repetition_penalty", 1.0},
      {"token_healing", false},
      {"watermarking_config", nullptr},
      {"output_attentions", false},
      {"output_hidden_states", false},
      {"encoder_no_repeat_ngram_size", 0},
      {"decoder_start_token_id", nullptr},
      {"is_assistant", false},
      {"num_assistant_tokens", 20},
      {"num_assistant_tokens_schedule", "constant"},
      {"assistant_confidence_threshold", 0.4},
      {"assistant_early_exit", nullptr},
      {"assistant_lookbehind", 10},
      {"target_lookbehind", 10},
      {"assistant_ensemble_weight", nullptr},
      {"speculation_type", nullptr},
      {"continuous_batching_config", nullptr},
      {"low_memory", nullptr},
      {"penalty_alpha", nullptr},
      {"dola_layers", nullptr},
      {"constraints", nullptr},
      {"prefill_chunk_size", nullptr},
  };
  return kFields;
}

// Metadata, and settings that only change how transformers computes (not what): always accepted.
const std::unordered_set<std::string>& ignored_fields() {
  static const std::unordered_set<std::string> kIgnored = {
      "transformers_version",    "_from_model_config", "_commit_hash",      "use_cache",
      "compile_config",          "disable_compile",    "trust_remote_code", "generation_kwargs",
      "return_dict_in_generate",  // mlxgp results always carry everything that was asked for
  };
  return kIgnored;
}

}  // namespace

HfField classify_hf_field(const std::string& key, const json& value) {
  if (ignored_fields().count(key)) return HfField::Ignored;
  auto it = unimplemented_fields().find(key);
  if (it == unimplemented_fields().end()) return HfField::Unknown;
  bool neutral = value.is_null() || value == it->second ||
                 ((value.is_array() || value.is_object() || value.is_string()) && value.empty());
  return neutral ? HfField::UnimplementedAtDefault : HfField::Unimplemented;
}

}  // namespace mlxgp
