// io::class_defaults: config_defaults.h.
#include "io/config_defaults.h"

#include <array>

namespace mlxgp::io {

namespace {

struct Entry {
  const char* model_type;
  ClassDefaults d;
};

// LlamaConfig, MistralConfig, ... as AutoConfig.for_model(type) prints them.
constexpr std::array<Entry, 51> kDefaults{{
    {"llama", {1e-6f, 10000.0f, 2048, false, "silu", 0, 0}},
    {"llama4_text", {1e-5f, 500000.0f, 131072, false, "silu", 128, 0}},
    {"mistral", {1e-6f, 10000.0f, 131072, false, "silu", 0, 4096}},
    {"ministral3", {1e-5f, 1000000.0f, 262144, false, "silu", 128, 0}},
    {"qwen2", {1e-6f, 10000.0f, 32768, false, "silu", 0, 4096}},  // the window only with use_sliding_window
    {"qwen3", {1e-6f, 10000.0f, 32768, false, "silu", 128, 4096}},
    {"qwen2_moe", {1e-6f, 10000.0f, 32768, false, "silu", 0, 4096}},
    {"qwen3_moe", {1e-6f, 10000.0f, 32768, false, "silu", 0, 4096}},
    {"olmoe", {1e-5f, 10000.0f, 4096, false, "silu", 0, 0}},
    {"olmo", {1e-5f, 10000.0f, 2048, false, "silu", 0, 0}},
    {"glm", {1.5625e-7f, 10000.0f, 131072, false, "silu", 128, 0}},
    {"glm4", {1.5625e-7f, 10000.0f, 131072, false, "silu", 128, 0}},
    {"glm4_moe", {1e-5f, 10000.0f, 131072, false, "silu", 0, 0}},
    {"deepseek_v2", {1e-6f, 10000.0f, 2048, false, "silu", 0, 0}},
    {"deepseek_v3", {1e-6f, 10000.0f, 4096, false, "silu", 0, 0}},
    {"glm4_moe_lite", {1e-5f, 10000.0f, 202752, false, "silu", 0, 0}},
    {"apertus", {1e-5f, 12000000.0f, 65536, false, "xielu", 0, 0}},
    {"dots1", {1e-6f, 10000.0f, 2048, false, "silu", 0, 4096}},  // the window on layers >= max_window_layers
    {"cohere", {1e-5f, 500000.0f, 8192, true, "silu", 0, 0}},
    {"cohere2", {1e-5f, 10000.0f, 8192, true, "silu", 0, 4096}},
    {"helium", {1e-8f, 100000.0f, 4096, false, "silu", 128, 0}},
    {"hunyuan_v1_dense", {1e-5f, 10000.0f, 2048, false, "silu", 0, 0}},
    {"hunyuan_v1_moe", {1e-5f, 10000.0f, 2048, false, "silu", 0, 0}},
    {"arcee", {1e-5f, 10000.0f, 4096, false, "relu2", 0, 0}},
    {"nemotron", {1e-5f, 10000.0f, 4096, false, "relu2", 0, 0}},
    {"gpt_neox", {1e-5f, 10000.0f, 2048, false, "gelu", 0, 0}},
    {"stablelm", {1e-5f, 10000.0f, 4096, false, "silu", 0, 0}},
    {"seed_oss", {1e-6f, 10000.0f, 524288, false, "silu", 128, 0}},
    {"ernie4_5", {1e-5f, 500000.0f, 131072, true, "silu", 128, 0}},
    {"ernie4_5_moe", {1e-5f, 500000.0f, 131072, true, "silu", 0, 0}},
    {"exaone4", {1e-5f, 10000.0f, 2048, false, "silu", 0, 4096}},
    {"phi3", {1e-5f, 10000.0f, 4096, false, "silu", 0, 0}},
    {"phi", {1e-5f, 10000.0f, 2048, false, "gelu_new", 0, 0}},
    {"starcoder2", {1e-5f, 10000.0f, 4096, true, "gelu_pytorch_tanh", 0, 0}},
    {"gemma", {1e-6f, 10000.0f, 8192, true, "gelu_pytorch_tanh", 256, 0}},
    {"gemma2", {1e-6f, 10000.0f, 8192, true, "gelu_pytorch_tanh", 256, 4096}},
    {"gemma3_text", {1e-6f, 1000000.0f, 131072, true, "gelu_pytorch_tanh", 256, 4096}},
    {"gemma4_text", {1e-6f, 1000000.0f, 131072, true, "gelu_pytorch_tanh", 256, 512}},
    {"granite", {1e-6f, 10000.0f, 2048, false, "silu", 0, 0}},
    {"granitemoe", {1e-6f, 10000.0f, 2048, false, "silu", 0, 0}},
    {"olmo2", {1e-5f, 10000.0f, 2048, false, "silu", 0, 0}},
    {"olmo3", {1e-5f, 10000.0f, 2048, false, "silu", 0, 4096}},
    {"smollm3", {1e-6f, 2000000.0f, 32768, true, "silu", 0, 0}},
    {"mixtral", {1e-5f, 1000000.0f, 131072, false, "silu", 0, 0}},
    {"phimoe", {1e-5f, 1000000.0f, 131072, false, "silu", 0, 0}},
    {"gpt_oss", {1e-5f, 150000.0f, 131072, false, "silu", 64, 128}},
    {"lfm2", {1e-5f, 1000000.0f, 128000, true, "silu", 0, 0}},
    {"lfm2_moe", {1e-5f, 1000000.0f, 128000, true, "silu", 0, 0}},
    {"qwen3_next", {1e-6f, 10000.0f, 32768, false, "silu", 256, 0}},
    {"qwen3_5_text", {1e-6f, 10000.0f, 32768, false, "silu", 256, 0}},
    {"qwen3_5_moe_text", {1e-6f, 10000.0f, 32768, false, "silu", 256, 0}},
}};

}  // namespace

const ClassDefaults* class_defaults(const std::string& model_type) {
  for (const auto& e : kDefaults)
    if (model_type == e.model_type) return &e.d;
  return nullptr;
}

void apply_class_defaults(ModelConfig& c) {
  const ClassDefaults* d = class_defaults(c.model_type);
  if (!d) return;
  c.rms_norm_eps = d->rms_norm_eps;
  c.rope_theta = d->rope_theta;
  c.max_position_embeddings = d->max_position_embeddings;
  c.tie_word_embeddings = d->tie_word_embeddings;
  c.hidden_act = d->hidden_act;
  c.head_dim = d->head_dim;
  // Gemma3TextConfig: the sliding layers rotate with rope_local_base_freq, 10000 when absent.
  if (c.model_type == "gemma3_text") c.sliding_rope_theta = 10000.0f;
  // GlmConfig / Glm4Config / Glm4MoeConfig / PhiConfig / NemotronConfig: RoPE on half of each head; StableLmConfig and
  // GPTNeoXConfig a quarter.
  if (c.model_type == "glm" || c.model_type == "glm4" || c.model_type == "glm4_moe" || c.model_type == "phi" ||
      c.model_type == "nemotron")
    c.partial_rotary_factor = 0.5f;
  if (c.model_type == "stablelm" || c.model_type == "gpt_neox") c.partial_rotary_factor = 0.25f;
  // Olmo3Config: the sliding layers rotate with rope_theta, unscaled (parse_rope_fields).
  if (c.model_type == "olmo3") c.sliding_rope_theta = c.rope_theta;
}

}  // namespace mlxgp::io
