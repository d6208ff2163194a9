// ModelConfig: the HF config.json fields this project reads, with HF names and defaults.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace mlxgp {

// HF `rope_scaling` (Llama-3 style "llama3", plus "linear" and "default").
struct RopeScaling {
  std::string rope_type = "default";
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
};

// MLX quantized checkpoints: config.json "quantization": {"group_size": 64, "bits": 4}.
struct QuantizationConfig {
  int group_size = 64;
  int bits = 4;
};

struct ModelConfig {
  std::string model_type;  // HF model_type: llama, mistral, qwen2, qwen3
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;  // 0 in JSON -> num_attention_heads
  int head_dim = 0;             // 0 in JSON -> hidden_size / num_attention_heads
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  std::optional<RopeScaling> rope_scaling;
  int max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // qwen2 forces q/k/v bias on
  bool mlp_bias = false;
  std::optional<int> sliding_window;
  // Per layer: whether it attends within sliding_window (transformers' "sliding_attention" layers:
  // every mistral layer, qwen2/qwen3 layers from layer_types or >= max_window_layers). Empty: none.
  std::vector<bool> sliding_layers;
  std::string hidden_act = "silu";
  std::optional<int> bos_token_id;
  std::vector<int> eos_token_id;  // config.json allows an int or a list
  std::optional<int> pad_token_id;
  std::optional<QuantizationConfig> quantization;
};

// Parses config.json text; throws [config] on malformed JSON or missing/invalid required fields.
ModelConfig parse_model_config(const std::string& json_text);

// Rejects values no model can run with (non-positive sizes or heads, heads that do not divide, a
// non-positive or non-finite rms_norm_eps / rope_theta / rope scaling factor): throws [component].
// parse_model_config and the GGUF loader call it; sizes are checked against the weights at build time.
void validate_model_config(const ModelConfig& config, const std::string& component = "config");

}  // namespace mlxgp
