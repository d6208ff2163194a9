// Granite: the llama stack with four config multipliers (embedding_multiplier, residual_multiplier,
// attention_multiplier as the attention scale, logits / logits_scaling), applied by DecoderModel. GraniteMoE
// (granitemoe: Granite 3.0 1B-A400M / 3B-A800M, PowerMoE) adds experts in every layer: a softmax over the router's
// top-k logits (mixtral's renormalised top-k, the same thing) from block_sparse_moe.router.layer, and the experts
// stored as one input_linear [E, 2I, H] ([gate; up] rows) and output_linear [E, H, I], split into the stacked
// switch_mlp projections at load (as mlx-lm's sanitize) and joined again for transformers' layout.
#include "mlxgp/error.h"
#include "models/decoder.h"
#include "models/model_names.h"

namespace mlxgp {

namespace {

const std::string kInput = ".block_sparse_moe.input_linear.", kOutput = ".block_sparse_moe.output_linear.";
const std::string kSwitch = ".block_sparse_moe.switch_mlp.";

}  // namespace

WeightMap granitemoe_model_names(WeightMap weights) {
  WeightMap out;
  for (auto& [name, a] : weights) {
    const auto in = name.find(kInput), down = name.find(kOutput);
    if (in != std::string::npos && a.ndim() == 3 && a.shape(1) % 2 == 0) {
      const std::string base = name.substr(0, in) + kSwitch, leaf = name.substr(in + kInput.size());
      auto halves = mx::split(a, 2, 1);
      out.insert_or_assign(base + "gate_proj." + leaf, mx::contiguous(halves[0]));
      out.insert_or_assign(base + "up_proj." + leaf, mx::contiguous(halves[1]));
    } else if (down != std::string::npos) {
      out.insert_or_assign(name.substr(0, down) + kSwitch + "down_proj." + name.substr(down + kOutput.size()), a);
    } else {
      out.insert_or_assign(name, a);
    }
  }
  return out;
}

WeightMap granitemoe_checkpoint_names(WeightMap weights, CheckpointLayout layout) {
  if (layout != CheckpointLayout::Hf) return weights;  // mlx-lm keeps the switch_mlp projections
  WeightMap out;
  for (auto& [name, a] : weights) {
    const auto at = name.find(kSwitch);
    if (at == std::string::npos) {
      out.insert_or_assign(name, a);
      continue;
    }
    const std::string module = name.substr(0, at), rest = name.substr(at + kSwitch.size());
    if (rest.starts_with("up_proj.")) continue;  // joined with gate_proj's
    if (rest.starts_with("down_proj.")) {
      out.insert_or_assign(module + kOutput + rest.substr(10), a);
    } else if (rest.starts_with("gate_proj.")) {
      const std::string leaf = rest.substr(10);
      auto up = weights.find(module + kSwitch + "up_proj." + leaf);
      if (up == weights.end()) fail("model", "'" + name + "' has no up_proj beside it to join into input_linear");
      out.insert_or_assign(module + kInput + leaf, mx::concatenate({a, up->second}, 1));
    } else {
      out.insert_or_assign(name, a);
    }
  }
  return out;
}

void register_granite() {
  register_model_type("granite", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), DecoderOptions{});
  });
  register_model_type("granitemoe", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.moe.mixtral_names = true;  // block_sparse_moe, experts as wide as intermediate_size, always renormalised
    o.moe.router = "router.layer";
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
