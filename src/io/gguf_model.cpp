#include "io/gguf_model.h"

#include <mlx/mlx.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "io/gguf_arch.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::io {

namespace {

// llama.cpp tensor name -> transformers name ("" for tensors the models do not use).
std::string hf_name(const GgufArch& arch, const std::string& name) {
  // qwen3next's ssm_a has no suffix (A = -exp(A_log)): read as linear_attn.A.
  if (name.rfind("blk.", 0) == 0 && name.ends_with(".ssm_a") && name.find('.', 4) == name.size() - 6)
    return "model.layers." + name.substr(4, name.size() - 10) + ".linear_attn.A";
  auto dot = name.rfind('.');
  if (dot == std::string::npos) return "";
  std::string base = name.substr(0, dot), suffix = name.substr(dot);  // ".weight", ".scales", ...
  if (base == "token_embd") return "model.embed_tokens" + suffix;
  // (lfm2's final norm is embedding_norm: llama.cpp's converter names it token_embd_norm, others output_norm)
  if (arch.model_type.starts_with("lfm2") && (base == "token_embd_norm" || base == "output_norm"))
    return "model.embedding_norm" + suffix;
  if (base == "output_norm") return "model.norm" + suffix;
  if (base == "output") return "lm_head" + suffix;
  if (base == "position_embd") return "model.embed_positions" + suffix;  // gpt2's learned positions (wpe)
  // gemma4's per-layer inputs (E2B / E4B): the token table, the embedding's projection and its norm.
  if (base == "per_layer_token_embd") return "model.embed_tokens_per_layer" + suffix;
  if (base == "per_layer_model_proj") return "model.per_layer_model_projection" + suffix;
  if (base == "per_layer_proj_norm") return "model.per_layer_projection_norm" + suffix;
  // Llama-3.1-style GGUFs carry rope scaling as per-frequency divisors instead of metadata.
  if (base == "rope_freqs") return std::string(kRopeFreqFactors);
  if (base.rfind("blk.", 0) != 0) return "";
  auto dot2 = base.find('.', 4);
  if (dot2 == std::string::npos) return "";
  std::string layer = base.substr(4, dot2 - 4), module = gguf_block_module(arch, base.substr(dot2 + 1));
  return module.empty() ? "" : "model.layers." + layer + "." + module + suffix;
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

// llama.cpp's YaRN (ggml's rope_yarn with ext_factor 1, as its context sets it for a yarn file): factor =
// 1 / freq_scale, the ramp between 32 and 1 rotations over original_context_length, dims floored / ceiled,
// cos/sin times 1 + 0.1 ln(factor): transformers' yarn with truncate on. The keys that would move it
// elsewhere (an extra attention factor, other betas, a log multiplier outside deepseek2) are refused.
RopeScaling gguf_yarn(const GgufMeta& meta, const std::string& p, int context_length) {
  // deepseek2's log multiplier is DeepSeek's mscale_all_dim, which gguf_arch.cpp's deepseek2_config reads.
  const bool deepseek2 = p == "deepseek2.";
  RopeScaling s;
  s.rope_type = "yarn";
  const auto factor = gguf_number(meta, p + "rope.scaling.factor");
  if (!factor || !std::isfinite(*factor) || *factor <= 0)
    fail("gguf", "metadata '" + p + "rope.scaling.factor' must be a positive number for yarn scaling");
  s.factor = static_cast<float>(*factor);
  s.original_max_position_embeddings = gguf_count_or(meta, p + "rope.scaling.original_context_length", context_length);
  if (s.original_max_position_embeddings <= 0)
    fail("gguf", "metadata '" + p + "rope.scaling.original_context_length' must be positive for yarn scaling");
  // Betas other than the defaults: the llama.cpp build we test against (node-llama-cpp 3.21.1) ignores
  // these keys on a llama file, so their meaning is not settled; refused rather than guessed.
  for (auto [key, neutral] :
       {std::pair{"rope.scaling.attn_factor", 1.0}, std::pair{"rope.scaling.yarn_log_multiplier", 0.0},
        std::pair{"rope.scaling.yarn_ext_factor", 1.0}, std::pair{"rope.scaling.yarn_attn_factor", 1.0},
        std::pair{"rope.scaling.yarn_beta_fast", 32.0}, std::pair{"rope.scaling.yarn_beta_slow", 1.0}})
    if (auto v = gguf_number(meta, p + key);
        v && *v != neutral && !(deepseek2 && std::string(key) == "rope.scaling.yarn_log_multiplier"))
      fail("gguf", "metadata '" + p + key + "' is not supported with yarn scaling (only " +
                       std::to_string(static_cast<int>(neutral)) + ")");
  return s;
}

// gemma4's tensors that are not a module's weight as named (Gemma4Model's converter): the router's scale
// (ffn_gate_inp.scale) and its per-expert scale (ffn_down_exps.scale), the layer scalar (layer_output_scale.weight),
// the experts' gate and up projections fused (ffn_gate_up_exps: gate rows first, as transformers' gate_up_proj) and
// rope_freqs, which gguf_arch_config has read as the full-attention layers' proportional RoPE. True when handled.
bool gemma4_weight(const std::string& hf, const mx::array& a, WeightMap& out) {
  auto ends = [&](const std::string& tail) { return hf.ends_with(tail); };
  auto stem = [&](const std::string& tail) { return hf.substr(0, hf.size() - tail.size()); };
  if (hf == kRopeFreqFactors) return true;
  if (ends(".router.proj.scale")) return out.emplace(stem(".proj.scale") + ".scale", a), true;
  if (ends(".experts.switch_mlp.down_proj.scale"))
    return out.emplace(stem(".experts.switch_mlp.down_proj.scale") + ".router.per_expert_scale", a), true;
  if (ends(".layer_scalar.weight")) return out.emplace(stem(".weight"), a), true;
  const std::string fused = ".switch_mlp.gate_up_proj.";
  const auto at = hf.find(fused);
  if (at == std::string::npos) return false;
  // Every part of the stored tensor (weight, scales, biases: [experts, rows, ...]) halves along its rows; the block
  // type marker goes with both halves.
  const std::string module = hf.substr(0, at) + ".switch_mlp.", part = hf.substr(at + fused.size() - 1);
  if (part == ".ggml_type") {
    out.emplace(module + "gate_proj" + part, a);
    out.emplace(module + "up_proj" + part, a);
    return true;
  }
  if (a.ndim() != 3 || a.shape(1) % 2 != 0)
    fail("gguf", "tensor '" + hf + "' must be [experts, 2 x rows, ...] (gate and up halves)");
  const int rows = a.shape(1) / 2;
  out.emplace(module + "gate_proj" + part, mx::contiguous(mx::slice(a, {0, 0, 0}, {a.shape(0), rows, a.shape(2)})));
  out.emplace(module + "up_proj" + part,
              mx::contiguous(mx::slice(a, {0, rows, 0}, {a.shape(0), 2 * rows, a.shape(2)})));
  return true;
}

}  // namespace

ModelConfig gguf_config(const GgufMeta& meta, const std::unordered_map<std::string, mx::array>& tensors) {
  const std::string name = gguf_string(meta, "general.architecture");
  if (name.empty()) fail("gguf", "metadata 'general.architecture' is missing");
  const GgufArch& arch = gguf_arch(name);
  ModelConfig c;
  c.model_type = arch.model_type;
  const std::string p = arch.gguf + ".";
  c.hidden_size = gguf_count(meta, p + "embedding_length");
  c.num_hidden_layers = gguf_count(meta, p + "block_count");
  c.num_attention_heads = gguf_count(meta, p + "attention.head_count");
  // llama.cpp reads these per layer or for all (get_key_or_arr); widths that differ between layers are gemma4's
  // (gguf_arch_config reads them there), a silently wrong model elsewhere. (An array is as long as the file holds it:
  // a corrupt block_count sizes nothing here.)
  auto first_layer = [&](const std::string& key, std::optional<int> fallback) {
    auto it = meta.find(key);
    const auto* a = it == meta.end() ? nullptr : std::get_if<mx::array>(&it->second);
    if (it == meta.end() && fallback) return *fallback;
    if (!a || a->size() == 1) return gguf_count(meta, key);
    auto v = gguf_layer_counts(meta, key, c.num_hidden_layers);
    if (c.model_type != "gemma4_text" && std::count(v.begin(), v.end(), v[0]) != static_cast<long>(v.size()))
      fail("gguf", "metadata '" + key + "' differs between layers, which mlxgp reads for gemma4 only");
    return v[0];
  };
  // MoE files may omit the dense width (gguf_arch_config falls back to the experts').
  const bool moe = c.model_type.ends_with("_moe") || c.model_type == "gpt_oss" || c.model_type == "qwen3_next" ||
                   c.model_type == "qwen3_5_moe_text";
  c.intermediate_size = first_layer(p + "feed_forward_length", moe ? std::optional<int>(0) : std::nullopt);
  if (c.model_type.starts_with("lfm2")) {  // 0 on its convolution layers (gguf_arch_config reads which)
    const auto kv = gguf_layer_counts(meta, p + "attention.head_count_kv", c.num_hidden_layers, c.num_attention_heads);
    c.num_key_value_heads = *std::max_element(kv.begin(), kv.end());
  } else {
    c.num_key_value_heads = first_layer(p + "attention.head_count_kv", c.num_attention_heads);
  }
  if (c.hidden_size <= 0 || c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 || c.num_hidden_layers <= 0 ||
      c.num_attention_heads % c.num_key_value_heads != 0)
    fail("gguf", "inconsistent attention metadata");
  if (!meta.count(p + "attention.key_length") && c.hidden_size % c.num_attention_heads != 0)
    fail("gguf", "metadata '" + p + "embedding_length' is not divisible by '" + p + "attention.head_count'");
  c.head_dim = gguf_count_or(meta, p + "attention.key_length", c.hidden_size / c.num_attention_heads);
  // llama.cpp rotates the first rope.dimension_count dims of each head (Phi-4-mini: 3/4 of them).
  const int rot = gguf_count_or(meta, p + "rope.dimension_count", c.head_dim);
  if (rot <= 0 || rot > c.head_dim || rot % 2 != 0)
    fail("gguf", "metadata '" + p + "rope.dimension_count' must be even and in [2, head_dim]");
  c.partial_rotary_factor = static_cast<float>(rot) / static_cast<float>(c.head_dim);
  c.max_position_embeddings = gguf_count_or(meta, p + "context_length", 2048);
  c.rms_norm_eps = static_cast<float>(gguf_number(meta, p + "attention.layer_norm_rms_epsilon").value_or(1e-6));
  c.rope_theta = static_cast<float>(gguf_number(meta, p + "rope.freq_base").value_or(10000.0));
  // llama.cpp's load_hparams: rope.scaling.type defaults to "linear", the factor falls back to the older
  // rope.scale_linear key, and an absent or zero factor means no scaling ("none" never scales).
  const std::string scaling =
      meta.count(p + "rope.scaling.type") ? gguf_string(meta, p + "rope.scaling.type") : std::string("linear");
  if (scaling == "linear") {
    auto factor = gguf_number(meta, p + "rope.scaling.factor");
    if (!factor) factor = gguf_number(meta, p + "rope.scale_linear");
    if (factor && *factor != 0.0 && *factor != 1.0) {
      RopeScaling s;
      s.rope_type = "linear";
      s.factor = static_cast<float>(*factor);
      c.rope_scaling = s;
    }
  } else if (scaling == "yarn") {
    c.rope_scaling = gguf_yarn(meta, p, c.max_position_embeddings);
  } else if (scaling != "none") {
    fail("gguf",
         "metadata '" + p + "rope.scaling.type' = '" + scaling + "' is not supported (supported: none, linear, yarn)");
  }
  auto emb = tensors.find("token_embd.weight");
  if (emb == tensors.end()) fail("gguf", "missing tensor 'token_embd.weight'");
  c.vocab_size = gguf_count_or(meta, p + "vocab_size", emb->second.shape(0));
  // llama.cpp drops output.weight when the head is tied to the embeddings.
  c.tie_word_embeddings = !tensors.count("output.weight");
  // llama.cpp reads the attention and FFN biases of every architecture when the file has them (its
  // loader marks them TENSOR_NOT_REQUIRED): a llamafied Qwen keeps its q/k/v biases. A layer missing
  // some of them is refused when the model is built (it names the tensor).
  c.qkv_bias = tensors.count("blk.0.attn_q.bias") > 0;
  c.attention_bias = tensors.count("blk.0.attn_output.bias") > 0;
  c.mlp_bias = tensors.count("blk.0.ffn_up.bias") > 0 || tensors.count("blk.0.ffn_down.bias") > 0;
  if (auto b = gguf_token_id(meta, "tokenizer.ggml.bos_token_id")) c.bos_token_id = *b;
  if (auto e = gguf_token_id(meta, "tokenizer.ggml.eos_token_id")) c.eos_token_id = {*e};
  if (auto pd = gguf_token_id(meta, "tokenizer.ggml.padding_token_id")) c.pad_token_id = *pd;
  gguf_arch_config(arch, meta, tensors, c);
  validate_model_config(c, "gguf");
  return c;
}

WeightMap gguf_weights(const ModelConfig& c, std::unordered_map<std::string, mx::array> tensors) {
  const GgufArch& arch = gguf_arch_of(c.model_type);
  // llama.cpp's LlamaModel converter (and its granite / arcee subclasses) permutes the q / k rows.
  const bool permuted = c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "mixtral" ||
                        c.model_type == "olmo" || c.model_type == "granite" || c.model_type == "arcee" ||
                        c.model_type == "smollm3";
  // llama.cpp's gemma, nemotron and qwen3next converters store norm weights as 1 + w (qwen3next's but the delta nets'
  // gated norm); transformers' reader subtracts the 1.
  const bool qwen3_next =
      c.model_type == "qwen3_next" || c.model_type == "qwen3_5_text" || c.model_type == "qwen3_5_moe_text";
  const bool norm_plus_one =
      c.model_type == "gemma2" || c.model_type == "gemma3_text" || c.model_type == "nemotron" || qwen3_next;
  WeightMap out;
  for (auto& [name, a] : tensors) {
    auto hf = hf_name(arch, name);
    if (hf.empty()) continue;  // tensors the models do not use
    auto arr = a;
    if (permuted && arr.ndim() >= 1) {
      if (hf.find(".self_attn.q_proj.") != std::string::npos) arr = unpermute_rows(arr, c.num_attention_heads);
      if (hf.find(".self_attn.k_proj.") != std::string::npos) arr = unpermute_rows(arr, c.num_key_value_heads);
    }
    if (norm_plus_one && hf.ends_with("norm.weight") && !hf.ends_with(".linear_attn.norm.weight"))
      arr = mx::subtract(mx::astype(arr, mx::float32), mx::array(1.0f));
    if (qwen3_next && hf.ends_with(".linear_attn.dt.bias")) hf = hf.substr(0, hf.size() - 8) + ".dt_bias";
    // The shared expert's gate is one row, stored 1-D by the converter.
    if (hf.ends_with(".shared_expert_gate.weight") && arr.ndim() == 1) arr = mx::reshape(arr, {1, arr.shape(0)});
    // gpt-oss's sinks and deepseek2's / ernie4_5-moe's exp_probs_b are parameters, not a module's weight / bias.
    if (hf.ends_with(".self_attn.sinks.weight")) hf.resize(hf.size() - 7);
    if (hf.ends_with(".e_score_correction_bias.bias") || hf.ends_with(".expert_bias.bias")) hf.resize(hf.size() - 5);
    if (c.model_type == "gemma4_text" && gemma4_weight(hf, arr, out)) continue;
    out.emplace(hf, arr);
  }
  return out;
}

}  // namespace mlxgp::io
