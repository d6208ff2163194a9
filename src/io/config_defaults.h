// What transformers' config classes fill in for fields a config.json leaves out (transformers 5.24,
// configuration_<model>.py), per model type. A checkpoint's config.json omits what equals its class's
// defaults only sometimes (hand-written or older configs), and a generic default there changes the math
// silently: gemma2 without query_pre_attn_scalar is scaled by 256^-0.5 in transformers, not head_dim^-0.5.
#pragma once

#include <optional>
#include <string>

#include "mlxgp/model_config.h"

namespace mlxgp::io {

struct ClassDefaults {
  float rms_norm_eps;
  float rope_theta;  // gemma3_text: its global layers' (the sliding ones default to 10000)
  int max_position_embeddings;
  bool tie_word_embeddings;
  const char* hidden_act;
  int head_dim;        // 0: hidden_size / num_attention_heads
  int sliding_window;  // used when config.json has no sliding_window key (0: none)
};

// The defaults of model_type's config class; nullptr for types without one here (gpt2 has its own
// reader, io/gpt2_config.h; unknown types are refused when the model is built).
const ClassDefaults* class_defaults(const std::string& model_type);

// Sets c's fields to model_type's class defaults (before config.json's own values are read over them).
void apply_class_defaults(ModelConfig& c);

}  // namespace mlxgp::io
