// GPT-2: the decoder with learned absolute positions (wpe), LayerNorms with bias, one fused [q; k; v]
// projection (c_attn) and biases on every projection, an ungated c_fc -> act -> c_proj MLP, no RoPE and
// the head tied to wte. Checkpoints name the tensors GPT-2's way and HF's are stored as Conv1D ([in, out]),
// so they are renamed (and transposed) into the decoder's layout here; the config side is in
// io/model_config.cpp.
#include <array>

#include "models/decoder.h"
#include "models/model_names.h"

namespace mlxgp {

namespace {

struct BlockName {
  const char* gpt2;
  const char* decoder;
  bool conv1d;  // HF stores the weight as Conv1D [in, out]
};

constexpr std::array<BlockName, 6> kBlock{{{"ln_1", "input_layernorm", false},
                                           {"ln_2", "post_attention_layernorm", false},
                                           {"attn.c_attn", "self_attn.qkv_proj", true},
                                           {"attn.c_proj", "self_attn.o_proj", true},
                                           {"mlp.c_fc", "mlp.c_fc", true},
                                           {"mlp.c_proj", "mlp.c_proj", true}}};

bool is_decoder_name(const std::string& n) {
  for (const char* p : {"model.layers.", "model.embed_tokens.", "model.embed_positions.", "model.norm."})
    if (n.starts_with(p)) return true;
  return false;
}

}  // namespace

WeightMap gpt2_model_names(WeightMap weights) {
  WeightMap out;
  for (auto& [name, a] : weights) {
    if (is_decoder_name(name)) {
      out.insert_or_assign(name, a);
      continue;
    }
    // HF saves GPT2LMHeadModel under transformer.* (the original checkpoints without a prefix); mlx-lm
    // under model.*, with the Conv1D weights already transposed to [out, in].
    std::string rest = name;
    bool hf = true;
    if (rest.starts_with("transformer.")) rest = rest.substr(12);
    else if (rest.starts_with("model.")) {
      rest = rest.substr(6);
      hf = false;
    }
    std::string renamed = name;  // unknown tensors keep their name (the decoder does not read them)
    if (rest.starts_with("wte.")) renamed = "model.embed_tokens." + rest.substr(4);
    else if (rest.starts_with("wpe.")) renamed = "model.embed_positions." + rest.substr(4);
    else if (rest.starts_with("ln_f.")) renamed = "model.norm." + rest.substr(5);
    else if (rest.starts_with("h.")) {
      const auto dot = rest.find('.', 2);
      if (dot == std::string::npos) {
        out.insert_or_assign(name, a);
        continue;
      }
      const std::string layer = rest.substr(2, dot - 2), module = rest.substr(dot + 1);
      // attn.bias / attn.masked_bias: the causal-mask buffers older transformers saved, not parameters.
      if (module == "attn.bias" || module == "attn.masked_bias") continue;
      for (const auto& b : kBlock) {
        const std::string from = std::string(b.gpt2) + ".";
        if (!module.starts_with(from)) continue;
        const std::string leaf = module.substr(from.size());
        renamed = "model.layers." + layer + "." + b.decoder + "." + leaf;
        if (hf && b.conv1d && leaf == "weight" && a.ndim() == 2) {
          out.insert_or_assign(renamed, mx::contiguous(mx::transpose(a)));
          renamed.clear();
        }
        break;
      }
      if (renamed.empty()) continue;
    }
    out.insert_or_assign(renamed, a);
  }
  return out;
}

WeightMap gpt2_checkpoint_names(WeightMap weights, CheckpointLayout layout) {
  const bool hf = layout == CheckpointLayout::Hf;
  const std::string top = hf ? "transformer." : "model.";
  WeightMap out;
  for (auto& [name, a] : weights) {
    std::string renamed = name;
    bool transpose = false;
    if (name.starts_with("model.embed_tokens.")) renamed = top + "wte." + name.substr(19);
    else if (name.starts_with("model.embed_positions.")) renamed = top + "wpe." + name.substr(22);
    else if (name.starts_with("model.norm.")) renamed = top + "ln_f." + name.substr(11);
    else if (name.starts_with("model.layers.")) {
      const auto dot = name.find('.', 13);
      const std::string layer = name.substr(13, dot - 13),
                        module = dot == std::string::npos ? "" : name.substr(dot + 1);
      for (const auto& b : kBlock) {
        const std::string from = std::string(b.decoder) + ".";
        if (!module.starts_with(from)) continue;
        const std::string leaf = module.substr(from.size());
        renamed = top + "h." + layer + "." + b.gpt2 + "." + leaf;
        transpose = hf && b.conv1d && leaf == "weight" && a.ndim() == 2;
      }
    }
    out.insert_or_assign(renamed, transpose ? mx::contiguous(mx::transpose(a)) : a);
  }
  return out;
}

void register_gpt2() {
  register_model_type("gpt2", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.layer_norm = true;
    o.learned_positions = true;
    o.attention.fused_qkv = true;
    o.mlp = layers::SwiGLU::Kind::Plain;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
