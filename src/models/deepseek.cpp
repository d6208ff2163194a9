// DeepSeek-V2 (deepseek_v2: V2, V2-Lite, V2.5, Coder-V2) and DeepSeek-V3 (deepseek_v3: V3, R1, Moonlight, Kimi K2's
// layout) and GLM-4.7-Flash (glm4_moe_lite: V3's attention and routing, its dense layers from mlp_layer_types): the
// llama stack with multi-head latent attention (layers::LatentAttention), dense first layers, then routed experts
// beside ungated shared_experts. V2 routes with a softmax (greedy or group-limited greedy), V3 with glm4_moe's
// sigmoid scores and correction bias (layers::SparseMoe).
#include "kernels/kernels.h"
#include "models/decoder.h"
#include "models/model_names.h"
#include "mlxgp/error.h"

namespace mlxgp {

namespace {

DecoderOptions deepseek_options() {
  DecoderOptions o;
  o.moe.shared_expert = "shared_experts";
  o.moe.shared_expert_gate = false;
  return o;
}

bool is_mtp_layer(const std::string& name, int layers) {
  static const std::string prefix = "model.layers.";
  if (!name.starts_with(prefix)) return false;
  const auto dot = name.find('.', prefix.size());
  const auto index = name.substr(prefix.size(), dot - prefix.size());
  return !index.empty() && index.find_first_not_of("0123456789") == std::string::npos && std::stoi(index) >= layers;
}

// An mlx-lm MultiLinear weight (or llama.cpp's attn_k_b / attn_v_b, the same layout) [heads, out, in] as floats:
// dequantized when it is stored MLX-affine or as llama.cpp blocks.
mx::array multi_linear(WeightMap& w, const std::string& prefix, int in) {
  auto weight = w.at(prefix + ".weight");
  w.erase(prefix + ".weight");
  if (auto t = w.find(prefix + ".ggml_type"); t != w.end()) {
    auto type = mx::astype(t->second, mx::uint32);
    w.erase(t);
    mx::eval(type);
    return kernels::ggml_dequantize(weight, type.item<uint32_t>(), in);
  }
  auto s = w.find(prefix + ".scales");
  if (s == w.end()) return weight;
  auto scales = s->second;
  w.erase(s);
  auto b = w.find(prefix + ".biases");
  if (b == w.end()) fail("model", prefix + " is quantized without biases (only affine latent projections are read)");
  auto biases = b->second;
  w.erase(b);
  const int groups = scales.shape(-1), words = weight.shape(-1);
  if (groups <= 0 || in % groups != 0 || (words * 32) % in != 0)
    fail("model", prefix + ": quantized shapes do not fit " + std::to_string(in) + " input features");
  return mx::dequantize(weight, scales, biases, in / groups, words * 32 / in);
}

}  // namespace

WeightMap deepseek_model_names(const ModelConfig& c, WeightMap weights) {
  // DeepSeek-V3's multi-token-prediction layers (model.layers.<num_hidden_layers>...), which transformers and
  // mlx-lm drop too.
  for (auto it = weights.begin(); it != weights.end();)
    it = is_mtp_layer(it->first, c.num_hidden_layers) ? weights.erase(it) : std::next(it);
  // mlx-lm's deepseek_v3 and glm4_moe_lite, llama.cpp's deepseek2 files (attn_k_b / attn_v_b): kv_b_proj split per head
  // into embed_q [heads, rank, nope] (the key rows, transposed) and unembed_out [heads, v, rank]; joined again as
  // transformers' [heads x (nope + v), rank].
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".self_attn.";
    auto k = weights.find(p + "embed_q.weight");
    if (k == weights.end() || k->second.ndim() != 3 || !weights.count(p + "unembed_out.weight")) continue;
    auto wk = mx::swapaxes(multi_linear(weights, p + "embed_q", c.qk_nope_head_dim), 1, 2);
    auto wv = multi_linear(weights, p + "unembed_out", c.kv_lora_rank);
    const int H = c.num_attention_heads;
    if (wk.shape() != mx::Shape{H, c.qk_nope_head_dim, c.kv_lora_rank} ||
        wv.shape() != mx::Shape{H, c.v_head_dim, c.kv_lora_rank})
      fail("model", p + "embed_q / unembed_out do not match the config's heads and latent widths");
    weights.insert_or_assign(p + "kv_b_proj.weight",
                             mx::reshape(mx::concatenate({wk, mx::astype(wv, wk.dtype())}, 1),
                                         {H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}));
  }
  return weights;
}

WeightMap deepseek_checkpoint_names(const ModelConfig& c, WeightMap weights, CheckpointLayout layout) {
  if (layout != CheckpointLayout::MlxLm || c.model_type == "deepseek_v2") return weights;
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".self_attn.";
    auto it = weights.find(p + "kv_b_proj.weight");
    if (it == weights.end()) continue;
    if (weights.count(p + "kv_b_proj.scales"))
      fail("model", p + "kv_b_proj is quantized; mlx-lm's layout splits it per head (save it unquantized)");
    const int H = c.num_attention_heads, nope = c.qk_nope_head_dim;
    auto full = mx::reshape(it->second, {H, nope + c.v_head_dim, c.kv_lora_rank});
    weights.erase(it);
    weights.insert_or_assign(p + "embed_q.weight",
                             mx::contiguous(mx::swapaxes(mx::slice(full, {0, 0, 0}, {H, nope, c.kv_lora_rank}), 1, 2)));
    weights.insert_or_assign(p + "unembed_out.weight",
                             mx::contiguous(mx::slice(full, {0, nope, 0}, {H, nope + c.v_head_dim, c.kv_lora_rank})));
  }
  return weights;
}

void register_deepseek() {
  for (const char* type : {"deepseek_v2", "deepseek_v3", "glm4_moe_lite"})
    register_model_type(type, [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
      return std::make_unique<DecoderModel>(c, std::move(w), deepseek_options());
    });
}

}  // namespace mlxgp
