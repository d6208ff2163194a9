// Qwen3-Next (qwen3_next: Qwen3-Next-80B-A3B) and Qwen3.5's language models (qwen3_5_text, qwen3_5_moe_text): pre-norm
// blocks whose mixer is a gated delta net (models/gated_delta_net.h) on the layers ModelConfig::linear_layers marks
// and gated attention elsewhere (q_proj's [q; gate] per head, sigmoid(gate) on the output; per-head q / k norms;
// RoPE on a quarter of each head); every RMSNorm zero-centred, scaling by (1 + w) as gemma's (mlx-lm's folders store
// 1 + w, run as stored); a dense SwiGLU or qwen2_moe's softmax-routed experts beside a sigmoid-gated shared expert.
#include <set>

#include "models/decoder.h"
#include "models/model_names.h"

namespace mlxgp {

namespace {

// The norms mlx-lm's sanitize stores as 1 + w (Qwen3NextRMSNorm's zero-centred weights); the gated norm inside the
// delta net (linear_attn.norm) scales by w itself in both.
bool zero_centred_norm(const std::string& name, const mx::array& a) {
  if (a.ndim() != 1) return false;
  for (const char* suffix :
       {".input_layernorm.weight", ".post_attention_layernorm.weight", ".q_norm.weight", ".k_norm.weight"})
    if (name.ends_with(suffix)) return true;
  return name == "model.norm.weight";
}

// Whether `w` holds mlx-lm's convolutions ([C, K, 1], its sanitize's moveaxis), i.e. an mlx-lm folder, whose
// zero-centred norms hold 1 + w. The model keeps them so (runs its norms on the stored weight), so the arrays of a
// wrapped mlx-lm module are the model's own, written back as they are.
bool mlx_lm_layout(const WeightMap& w) {
  for (auto& [name, a] : w)
    if (name.ends_with(".linear_attn.conv1d.weight") && a.ndim() == 3) return a.shape(2) == 1 && a.shape(1) > 1;
  return false;
}

// Every zero-centred norm's weight w -> w + delta (none for delta 0), and each convolution to mlx-lm's [C, K, 1] or
// transformers' [C, 1, K] (from either, or GGUF's [C, K]); evaluated here, as checkpoint writing reads them at once.
void convert_layout(WeightMap& w, float delta, bool to_mlx_lm) {
  std::vector<mx::array> changed;
  for (auto& [name, a] : w) {
    if (delta != 0.0f && zero_centred_norm(name, a)) {
      a = mx::add(a, mx::array(delta, a.dtype()));
      changed.push_back(a);
    } else if (name.ends_with(".linear_attn.conv1d.weight") && a.ndim() >= 2) {
      const int C = a.shape(0), K = static_cast<int>(a.size()) / C;
      a = mx::reshape(a, to_mlx_lm ? mx::Shape{C, K, 1} : mx::Shape{C, 1, K});
      changed.push_back(a);
    }
  }
  mx::eval(changed);
}

}  // namespace

WeightMap qwen3_next_model_names(WeightMap w) {
  std::vector<std::string> mtp;  // Qwen3NextPreTrainedModel._keys_to_ignore_on_load_unexpected: ^mtp.*
  for (auto& [name, a] : w)
    if (name.starts_with("mtp.")) mtp.push_back(name);
  for (auto& name : mtp) w.erase(name);
  std::set<std::string> fused;  // "model.layers.N.mlp" (Qwen3.5-MoE's uploads: experts.gate_up_proj / down_proj)
  for (auto& [name, a] : w)
    if (name.ends_with(".mlp.experts.gate_up_proj")) fused.insert(name.substr(0, name.size() - 21));
  for (const auto& m : fused) split_fused_experts(w, m + ".experts.", m + ".switch_mlp.");
  return w;
}

WeightMap qwen3_next_checkpoint_names(const std::string& model_type, WeightMap w, CheckpointLayout layout) {
  // The weights' own convention (mlx_lm_layout) -> the layout's: 1 + w and [C, K, 1] for mlx-lm, w and [C, 1, K] for
  // transformers.
  const bool from_mlx_lm = mlx_lm_layout(w);
  if (layout == CheckpointLayout::MlxLm) {
    convert_layout(w, from_mlx_lm ? 0.0f : 1.0f, true);
    return w;
  }
  convert_layout(w, from_mlx_lm ? -1.0f : 0.0f, false);
  if (model_type != "qwen3_5_text") layers::unstack_experts(w, false);  // transformers' per-expert tensors
  return w;
}

void register_qwen3_next() {
  DecoderOptions o;
  o.norm_plus_one = true;
  o.attention.qk_norm = true;
  o.attention.norm_plus_one = true;
  for (const char* type : {"qwen3_next", "qwen3_5_text", "qwen3_5_moe_text"})
    register_model_type(type, [o](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
      DecoderOptions own = o;
      own.norm_plus_one = own.attention.norm_plus_one = !mlx_lm_layout(w);  // (mlx-lm's norms hold 1 + w)
      return std::make_unique<DecoderModel>(c, std::move(w), own);
    });
}

}  // namespace mlxgp
