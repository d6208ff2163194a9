// gpt_oss (OpenAI's gpt-oss): the llama stack with q/k/v/o biases, a learned sink logit per attention head
// (transformers' eager_attention_forward: it joins each softmax and is dropped after), alternating sliding
// and full layers, YaRN, and a mixture of experts in every layer (models/moe.h: a router with a bias,
// softmax over the top-k logits, experts with biases and a clamped SwiGLU).
#include <set>
#include <utility>
#include <vector>

#include "mlxgp/error.h"
#include "models/decoder.h"
#include "models/model_names.h"

namespace mlxgp {

namespace {

// Every other entry along `axis`, from `first` (gate_up_proj interleaves gate and up), as a strided view:
// each caller copies once, after any transpose of its own.
mx::array every_other(const mx::array& a, int axis, int first) {
  mx::Shape start(a.ndim(), 0), strides(a.ndim(), 1);
  start[axis] = first;
  strides[axis] = 2;
  return mx::slice(a, start, a.shape(), strides);
}

void check_rank(const mx::array& a, size_t ndim, const std::string& name) {
  if (a.ndim() != ndim) fail("model", "tensor '" + name + "' must have " + std::to_string(ndim) + " dimensions");
}

// MXFP4 blocks [E, out, in / 32, 16 bytes] (low nibble first) are MLX's mxfp4 packing of [E, out, in]:
// viewed as uint32 words [E, out, in / 8]; the uint8 scales [E, out, in / 32] are its e8m0 scales.
mx::array mxfp4_words(const mx::array& blocks, const std::string& name) {
  check_rank(blocks, 4, name);
  if (blocks.dtype() != mx::uint8 || blocks.shape(3) != 16) fail("model", "tensor '" + name + "' is not MXFP4 blocks");
  return mx::view(mx::reshape(mx::contiguous(blocks), {blocks.shape(0), blocks.shape(1), blocks.shape(2) * 16}),
                  mx::uint32);
}

}  // namespace

WeightMap gpt_oss_model_names(WeightMap w) {
  std::set<std::string> layers;  // "model.layers.N.mlp" of every layer with transformers' expert tensors
  for (auto& [name, a] : w)
    for (const char* t :
         {".mlp.experts.gate_up_proj", ".mlp.experts.gate_up_proj_blocks", ".mlp.experts.down_proj_bias"})
      if (name.ends_with(t)) layers.insert(name.substr(0, name.rfind(".experts.")));
  for (const auto& p : layers) {
    const std::string e = p + ".experts.", s = p + ".switch_mlp.";
    if (w.count(e + "gate_up_proj_blocks")) {
      // The original checkpoint: gate_up rows interleave gate (even) and up (odd) outputs.
      auto gu = mxfp4_words(pop_tensor(w, e + "gate_up_proj_blocks"), e + "gate_up_proj_blocks");
      auto gu_scales = pop_tensor(w, e + "gate_up_proj_scales");
      check_rank(gu_scales, 3, e + "gate_up_proj_scales");
      w.insert_or_assign(s + "gate_proj.weight", mx::contiguous(every_other(gu, 1, 0)));
      w.insert_or_assign(s + "up_proj.weight", mx::contiguous(every_other(gu, 1, 1)));
      w.insert_or_assign(s + "gate_proj.scales", mx::contiguous(every_other(gu_scales, 1, 0)));
      w.insert_or_assign(s + "up_proj.scales", mx::contiguous(every_other(gu_scales, 1, 1)));
      w.insert_or_assign(s + "down_proj.weight",
                         mxfp4_words(pop_tensor(w, e + "down_proj_blocks"), e + "down_proj_blocks"));
      w.insert_or_assign(s + "down_proj.scales", pop_tensor(w, e + "down_proj_scales"));
    } else if (w.count(e + "gate_up_proj")) {
      // transformers' GptOssExperts in float: x @ W with gate_up_proj [E, hidden, 2I] (gate columns even, up
      // odd) and down_proj [E, I, hidden]; the switch layout is [E, out, in].
      auto gu = pop_tensor(w, e + "gate_up_proj");
      check_rank(gu, 3, e + "gate_up_proj");
      w.insert_or_assign(s + "gate_proj.weight", mx::contiguous(mx::swapaxes(every_other(gu, 2, 0), 1, 2)));
      w.insert_or_assign(s + "up_proj.weight", mx::contiguous(mx::swapaxes(every_other(gu, 2, 1), 1, 2)));
      auto down = pop_tensor(w, e + "down_proj");
      check_rank(down, 3, e + "down_proj");
      w.insert_or_assign(s + "down_proj.weight", mx::contiguous(mx::swapaxes(down, 1, 2)));
    }
    if (w.count(e + "gate_up_proj_bias")) {
      auto bias = pop_tensor(w, e + "gate_up_proj_bias");
      check_rank(bias, 2, e + "gate_up_proj_bias");
      w.insert_or_assign(s + "gate_proj.bias", mx::contiguous(every_other(bias, 1, 0)));
      w.insert_or_assign(s + "up_proj.bias", mx::contiguous(every_other(bias, 1, 1)));
    }
    w.insert_or_assign(s + "down_proj.bias", pop_tensor(w, e + "down_proj_bias"));
  }
  // mlx-lm's layout (and whatever is left): experts.<proj>.<suffix> are stacked already.
  rename_infix(w, ".mlp.experts.", ".mlp.switch_mlp.");
  return w;
}

WeightMap gpt_oss_checkpoint_names(WeightMap w, CheckpointLayout layout) {
  std::set<std::string> layers;  // "model.layers.N.mlp" of every layer with stacked experts
  for (auto& [name, a] : w)
    if (auto at = name.find(".mlp.switch_mlp."); at != std::string::npos) layers.insert(name.substr(0, at + 4));
  for (const auto& p : layers) {
    const std::string e = p + ".experts.", s = p + ".switch_mlp.";
    if (layout == CheckpointLayout::MlxLm) {  // mlx-lm's GptOss keeps the switch layout under experts.
      rename_prefix(w, s, e);
      continue;
    }
    refuse_quantized_switch(w, s, "gpt_oss");
    // The inverse of gpt_oss_model_names: [E, out, in] -> x @ W ([E, in, out]); gate and up interleaved
    // (gate at even columns), each pair of the same expert's output feature side by side.
    auto interleave = [](const mx::array& gate, const mx::array& up) {
      auto both = mx::stack({gate, up}, -1);  // [..., n, 2]
      auto shape = gate.shape();
      shape.back() *= 2;
      return mx::reshape(both, shape);
    };
    if (w.count(s + "gate_proj.weight")) {
      auto gate = mx::swapaxes(pop_tensor(w, s + "gate_proj.weight"), 1, 2),
           up = mx::swapaxes(pop_tensor(w, s + "up_proj.weight"), 1, 2);
      w.insert_or_assign(e + "gate_up_proj", mx::contiguous(interleave(gate, up)));
      w.insert_or_assign(e + "down_proj", mx::contiguous(mx::swapaxes(pop_tensor(w, s + "down_proj.weight"), 1, 2)));
    }
    if (w.count(s + "gate_proj.bias"))
      w.insert_or_assign(e + "gate_up_proj_bias",
                         interleave(pop_tensor(w, s + "gate_proj.bias"), pop_tensor(w, s + "up_proj.bias")));
    if (w.count(s + "down_proj.bias")) w.insert_or_assign(e + "down_proj_bias", pop_tensor(w, s + "down_proj.bias"));
  }
  return w;
}

void register_gpt_oss() {
  register_model_type("gpt_oss", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.sinks = true;
    o.moe.gpt_oss = true;
    o.moe.router = "router";
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
