// GPT-NeoX (gpt_neox: Pythia, GPT-NeoX-20B, Dolly v2, RedPajama-INCITE): LayerNorms with biases, attention and
// MLP side by side on their own norms of x (use_parallel_residual, the default; else the usual pre-norm blocks),
// one biased query_key_value whose rows hold each head's [q; k; v] in turn, RoPE on the first quarter of each head
// (rotary_pct), an ungated dense_h_to_4h -> gelu -> dense_4h_to_h MLP with biases and an untied head. Checkpoints
// name the model gpt_neox.* and the head embed_out (transformers 5 reads it as lm_head and writes embed_out again;
// mlx-lm: model.*, its layers model.h.N, its head model.embed_out); they are renamed
// into the decoder's layout here and back for saving. The config side is in io/model_config.cpp.
#include "models/decoder.h"
#include "models/model_names.h"

namespace mlxgp {

namespace {

// The causal-mask and rotary buffers older transformers saved with the weights: not parameters.
bool is_buffer(const std::string& name) {
  return name.ends_with(".attention.bias") || name.ends_with(".attention.masked_bias") ||
         name.ends_with(".attention.rotary_emb.inv_freq");
}

// "<layer>.<module>" after "layers." / "h.": the decoder's "model.layers.<layer>.<module>", attention -> self_attn.
std::string layer_name(const std::string& rest) {
  std::string module = rest;
  const auto dot = rest.find('.');
  if (dot != std::string::npos && rest.compare(dot + 1, 10, "attention.") == 0)
    module = rest.substr(0, dot) + ".self_attn." + rest.substr(dot + 11);
  return "model.layers." + module;
}

}  // namespace

WeightMap gpt_neox_model_names(WeightMap weights) {
  WeightMap out;
  for (auto& [name, a] : weights) {
    if (is_buffer(name)) continue;
    if (name.starts_with("model.layers.") || name.starts_with("model.embed_tokens.")) {  // already the decoder's
      out.insert_or_assign(name, a);
      continue;
    }
    std::string rest = name;
    if (rest.starts_with("gpt_neox.")) rest = rest.substr(9);
    else if (rest.starts_with("model.")) rest = rest.substr(6);
    std::string renamed = name;  // unknown tensors keep their name (the decoder does not read them)
    if (rest.starts_with("embed_in.")) renamed = "model.embed_tokens." + rest.substr(9);
    else if (rest.starts_with("embed_out.")) renamed = "lm_head." + rest.substr(10);  // older transformers, mlx-lm
    else if (rest.starts_with("final_layer_norm.")) renamed = "model." + rest;
    else if (rest.starts_with("layers.")) renamed = layer_name(rest.substr(7));
    else if (rest.starts_with("h.")) renamed = layer_name(rest.substr(2));
    out.insert_or_assign(renamed, a);
  }
  return out;
}

WeightMap gpt_neox_checkpoint_names(WeightMap weights, CheckpointLayout layout) {
  const bool hf = layout == CheckpointLayout::Hf;
  const std::string top = hf ? "gpt_neox." : "model.";
  WeightMap out;
  for (auto& [name, a] : weights) {
    std::string renamed = name;
    if (name.starts_with("model.embed_tokens.")) renamed = top + "embed_in." + name.substr(19);
    else if (name.starts_with("model.final_layer_norm.")) renamed = top + name.substr(6);
    else if (name.starts_with("lm_head.")) renamed = (hf ? "embed_out." : "model.embed_out.") + name.substr(8);
    else if (name.starts_with("model.layers.")) {
      std::string rest = name.substr(13);
      const auto dot = rest.find('.');
      if (dot != std::string::npos && rest.compare(dot + 1, 9, "self_attn") == 0)
        rest = rest.substr(0, dot) + ".attention" + rest.substr(dot + 10);
      renamed = top + (hf ? "layers." : "h.") + rest;
    }
    out.insert_or_assign(renamed, a);
  }
  return out;
}

void register_gpt_neox() {
  register_model_type("gpt_neox", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.norms = c.parallel_residual ? DecoderOptions::Norms::ParallelTwo : DecoderOptions::Norms::Pre;
    o.layer_norm = true;
    o.mlp = layers::SwiGLU::Kind::Plain;
    o.plain_mlp_names = {"dense_h_to_4h", "dense_4h_to_h"};
    o.attention.fused_qkv_per_head = true;
    o.attention.o_proj = "dense";
    o.final_norm = "final_layer_norm";
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
