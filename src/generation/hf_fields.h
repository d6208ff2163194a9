// The HF GenerationConfig fields this project does not implement (yet), with the values that mean
// "off", so a config that leaves them at their defaults is accepted.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace mlxgp {

enum class HfField {
  Ignored,                 // metadata or a setting with no effect on the output (transformers_version, use_cache)
  UnimplementedAtDefault,  // a real HF field, not implemented, but set to its neutral value
  Unimplemented,           // a real HF field, not implemented, set to a value that would change the output
  Unknown,                 // not an HF GenerationConfig field at all
};

// For a key that is not one of GenerationConfig's own fields.
HfField classify_hf_field(const std::string& key, const nlohmann::json& value);

}  // namespace mlxgp
