// Llama 4 (llama4_text, and the language model of "llama4" multimodal checkpoints): the llama stack with
// interleaved RoPE, NoPE layers (ModelConfig::rope_layers) that scale their queries by position
// (llama4_scaling_nope), chunked attention on the rotary layers (chunked_layers, applied by DecoderModel), weightless
// q/k norms after RoPE, and mixture-of-experts feed-forwards whose experts take router-scaled inputs beside an
// ungated shared expert (models/moe.h, SparseMoe::scaled_inputs). The checkpoints name each block's feed-forward
// feed_forward (the decoder's mlp) and hold the experts as transformers' Llama4TextExperts: gate_up_proj
// [E, hidden, 2I] (gate columns first) and down_proj [E, I, hidden], multiplied as x @ W.
#include <set>
#include <utility>
#include <vector>

#include "mlxgp/error.h"
#include "models/decoder.h"
#include "models/model_names.h"

namespace mlxgp {

WeightMap llama4_model_names(WeightMap w) {
  rename_infix(w, ".feed_forward.", ".mlp.");
  std::set<std::string> modules;  // "model.layers.N.mlp" of every layer with transformers' expert tensors
  for (auto& [name, a] : w)
    if (name.ends_with(".mlp.experts.gate_up_proj")) modules.insert(name.substr(0, name.rfind(".experts.")));
  for (const auto& p : modules) {
    const std::string e = p + ".experts.", s = p + ".switch_mlp.";
    auto gu = pop_tensor(w, e + "gate_up_proj"), down = pop_tensor(w, e + "down_proj");
    if (gu.ndim() != 3 || gu.shape(2) % 2 != 0 || down.ndim() != 3)
      fail("model", "tensors '" + e + "gate_up_proj' / 'down_proj' must be [experts, in, out] with gate and up halves");
    const int I = gu.shape(2) / 2;
    auto half = [&](int first) {
      return mx::contiguous(mx::swapaxes(mx::slice(gu, {0, 0, first}, {gu.shape(0), gu.shape(1), first + I}), 1, 2));
    };
    w.insert_or_assign(s + "gate_proj.weight", half(0));
    w.insert_or_assign(s + "up_proj.weight", half(I));
    w.insert_or_assign(s + "down_proj.weight", mx::contiguous(mx::swapaxes(down, 1, 2)));
  }
  // mlx-lm's layout: experts.<proj>.<suffix> stacked already ([E, out, in], maybe quantized).
  rename_infix(w, ".mlp.experts.", ".mlp.switch_mlp.");
  return w;
}

WeightMap llama4_checkpoint_names(WeightMap w, CheckpointLayout layout) {
  rename_infix(w, ".mlp.", ".feed_forward.");
  std::set<std::string> modules;  // "model.layers.N.feed_forward" of every layer with stacked experts
  for (auto& [name, a] : w)
    if (auto at = name.find(".feed_forward.switch_mlp."); at != std::string::npos)
      modules.insert(name.substr(0, at + 13));
  for (const auto& p : modules) {
    const std::string e = p + ".experts.", s = p + ".switch_mlp.";
    if (layout == CheckpointLayout::MlxLm) {  // mlx-lm's SwitchGLU under experts.
      rename_prefix(w, s, e);
      continue;
    }
    refuse_quantized_switch(w, s, "llama4");
    // The inverse of llama4_model_names: [E, out, in] -> [E, in, out], gate's columns then up's.
    auto gate = mx::swapaxes(pop_tensor(w, s + "gate_proj.weight"), 1, 2),
         up = mx::swapaxes(pop_tensor(w, s + "up_proj.weight"), 1, 2);
    w.insert_or_assign(e + "gate_up_proj", mx::contiguous(mx::concatenate({gate, up}, 2)));
    w.insert_or_assign(e + "down_proj", mx::contiguous(mx::swapaxes(pop_tensor(w, s + "down_proj.weight"), 1, 2)));
  }
  return w;
}

void register_llama4() {
  register_model_type("llama4_text", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.rope_traditional = true;  // Llama4's apply_rotary_emb rotates adjacent pairs (complex numbers)
    o.attention.l2_qk_norm = c.use_qk_norm;
    o.moe.router = "router";
    o.moe.shared_expert = "shared_expert";
    o.moe.shared_expert_gate = false;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
