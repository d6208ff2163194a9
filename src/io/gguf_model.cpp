#include "io/gguf_model.h"

#include <mlx/mlx.h>

#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::io {

namespace {

using Meta = std::unordered_map<std::string, mx::GGUFMetaData>;

const mx::array* scalar(const Meta& meta, const std::string& key) {
  auto it = meta.find(key);
  if (it == meta.end()) return nullptr;
  auto* a = std::get_if<mx::array>(&it->second);
  if (!a || a->size() != 1) fail("gguf", "metadata '" + key + "' is not a number");
  return a;
}

std::optional<double> get_num(const Meta& meta, const std::string& key) {
  auto* a = scalar(meta, key);
  if (!a) return std::nullopt;
  return mx::astype(mx::reshape(*a, {}), mx::float64, mx::Device::cpu).item<double>();
}

int require_int(const Meta& meta, const std::string& key) {
  auto v = get_num(meta, key);
  if (!v) fail("gguf", "metadata '" + key + "' is missing");
  if (*v < 0 || *v > 1e9) fail("gguf", "metadata '" + key + "' is out of range");
  return static_cast<int>(*v);
}

std::string get_str(const Meta& meta, const std::string& key) {
  auto it = meta.find(key);
  if (it == meta.end()) return "";
  auto* s = std::get_if<std::string>(&it->second);
  return s ? *s : "";
}

// llama.cpp tensor suffix -> transformers module path (inside model.layers.N).
const std::pair<const char*, const char*> kBlockNames[] = {
    {"attn_norm", "input_layernorm"},    {"ffn_norm", "post_attention_layernorm"},
    {"attn_q", "self_attn.q_proj"},      {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},      {"attn_output", "self_attn.o_proj"},
    {"attn_q_norm", "self_attn.q_norm"}, {"attn_k_norm", "self_attn.k_norm"},
    {"ffn_gate", "mlp.gate_proj"},       {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};

std::string hf_name(const std::string& name) {
  auto dot = name.rfind('.');
  if (dot == std::string::npos) return "";
  std::string base = name.substr(0, dot), suffix = name.substr(dot);  // ".weight", ".scales", ...
  if (base == "token_embd") return "model.embed_tokens" + suffix;
  if (base == "output_norm") return "model.norm" + suffix;
  if (base == "output") return "lm_head" + suffix;
  // Llama-3.1-style GGUFs carry rope scaling as per-frequency divisors instead of metadata.
  if (base == "rope_freqs") return std::string(kRopeFreqFactors);
  if (base.rfind("blk.", 0) != 0) return "";
  auto dot2 = base.find('.', 4);
  if (dot2 == std::string::npos) return "";
  std::string layer = base.substr(4, dot2 - 4), part = base.substr(dot2 + 1);
  for (auto& [g, h] : kBlockNames)
    if (part == g) return "model.layers." + layer + "." + h + suffix;
  return "";
}

// llama.cpp's converter stores Q/K rows as (head, pair, half) instead of HF's (head, half, pair);
// this restores HF order (transformers' reverse_permute_weights). Works on packed quantized rows too.
mx::array unpermute_rows(const mx::array& a, int n_heads) {
  const int rows = a.shape(0);
  if (rows % (2 * n_heads) != 0) fail("gguf", "attention weight rows do not split into heads");
  mx::Shape s = {n_heads, rows / n_heads / 2, 2};
  for (int i = 1; i < static_cast<int>(a.ndim()); ++i) s.push_back(a.shape(i));
  auto r = mx::reshape(a, s);
  std::vector<int> axes = {0, 2, 1};
  for (size_t i = 3; i < s.size(); ++i) axes.push_back(static_cast<int>(i));
  return mx::reshape(mx::transpose(r, axes), a.shape());
}

}  // namespace

ModelConfig gguf_config(const Meta& meta, const std::unordered_map<std::string, mx::array>& tensors) {
  const std::string arch = get_str(meta, "general.architecture");
  if (arch.empty()) fail("gguf", "metadata 'general.architecture' is missing");
  if (arch != "llama" && arch != "mistral" && arch != "qwen2" && arch != "qwen3")
    fail("model", "unknown model_type '" + arch + "' (supported: llama, mistral, qwen2, qwen3)");
  ModelConfig c;
  c.model_type = arch;
  const std::string p = arch + ".";
  c.hidden_size = require_int(meta, p + "embedding_length");
  c.intermediate_size = require_int(meta, p + "feed_forward_length");
  c.num_hidden_layers = require_int(meta, p + "block_count");
  c.num_attention_heads = require_int(meta, p + "attention.head_count");
  c.num_key_value_heads = get_num(meta, p + "attention.head_count_kv")
                              ? require_int(meta, p + "attention.head_count_kv")
                              : c.num_attention_heads;
  if (c.hidden_size <= 0 || c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 || c.num_hidden_layers <= 0 ||
      c.num_attention_heads % c.num_key_value_heads != 0)
    fail("gguf", "inconsistent attention metadata");
  if (!get_num(meta, p + "attention.key_length") && c.hidden_size % c.num_attention_heads != 0)
    fail("gguf", "metadata '" + p + "embedding_length' is not divisible by '" + p + "attention.head_count'");
  c.head_dim = get_num(meta, p + "attention.key_length") ? require_int(meta, p + "attention.key_length")
                                                         : c.hidden_size / c.num_attention_heads;
  c.max_position_embeddings = get_num(meta, p + "context_length") ? require_int(meta, p + "context_length") : 2048;
  c.rms_norm_eps = static_cast<float>(get_num(meta, p + "attention.layer_norm_rms_epsilon").value_or(1e-6));
  c.rope_theta = static_cast<float>(get_num(meta, p + "rope.freq_base").value_or(10000.0));
  if (get_str(meta, p + "rope.scaling.type") == "linear") {
    RopeScaling s;
    s.rope_type = "linear";
    s.factor = static_cast<float>(get_num(meta, p + "rope.scaling.factor").value_or(1.0));
    c.rope_scaling = s;
  }
  auto emb = tensors.find("token_embd.weight");
  if (emb == tensors.end()) fail("gguf", "missing tensor 'token_embd.weight'");
  c.vocab_size = get_num(meta, p + "vocab_size") ? require_int(meta, p + "vocab_size") : emb->second.shape(0);
  // llama.cpp drops output.weight when the head is tied to the embeddings.
  c.tie_word_embeddings = !tensors.count("output.weight");
  c.attention_bias = false;
  if (auto b = get_num(meta, "tokenizer.ggml.bos_token_id")) c.bos_token_id = static_cast<int>(*b);
  if (auto e = get_num(meta, "tokenizer.ggml.eos_token_id")) c.eos_token_id = {static_cast<int>(*e)};
  if (auto pd = get_num(meta, "tokenizer.ggml.padding_token_id")) c.pad_token_id = static_cast<int>(*pd);
  validate_model_config(c, "gguf");
  return c;
}

WeightMap gguf_weights(const ModelConfig& c, std::unordered_map<std::string, mx::array> tensors) {
  const bool permuted = c.model_type == "llama" || c.model_type == "mistral";
  WeightMap out;
  for (auto& [name, a] : tensors) {
    auto hf = hf_name(name);
    if (hf.empty()) continue;  // tensors the models do not use
    auto arr = a;
    if (permuted && arr.ndim() >= 1) {
      if (hf.find(".self_attn.q_proj.") != std::string::npos) arr = unpermute_rows(arr, c.num_attention_heads);
      if (hf.find(".self_attn.k_proj.") != std::string::npos) arr = unpermute_rows(arr, c.num_key_value_heads);
    }
    out.emplace(hf, arr);
  }
  return out;
}

}  // namespace mlxgp::io
