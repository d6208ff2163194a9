// GPT-2: the decoder with learned absolute positions (wpe), LayerNorms with bias, one fused [q; k; v]
// projection (c_attn) and biases on every projection, an ungated c_fc -> act -> c_proj MLP, no RoPE and
// the head tied to wte. Checkpoints name the tensors GPT-2's way and HF's are stored as Conv1D ([in, out]),
// so they are renamed (and transposed) into the decoder's layout here; the config side is in
// io/gpt2_config.cpp and io/model_config.cpp.
// GPTBigCode (StarCoder, SantaCoder) is GPT-2 with nn.Linear weights ([out, in], under transformer.* in both
// transformers' and mlx-lm's checkpoints) and, with multi_query, one key/value head: c_attn's rows are
// [q; k; v]. Without multi_query transformers reads them per head ([heads, 3, head_dim], gpt_neox's
// query_key_value layout), so such a c_attn becomes self_attn.query_key_value.
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

// The decoder's name of GPTBigCode's c_attn in `layer`: per head when it holds as many k / v rows as q rows
// (3 x the rows of c_proj, which are n_embd; with one head both layouts are one).
const char* bigcode_qkv(const WeightMap& w, const std::string& top, const std::string& layer, const mx::array& a) {
  auto proj = w.find(top + "h." + layer + ".attn.c_proj.weight");
  const bool per_head =
      a.ndim() >= 1 && proj != w.end() && proj->second.ndim() == 2 && a.shape(0) == 3 * proj->second.shape(0);
  return per_head ? "self_attn.query_key_value" : "self_attn.qkv_proj";
}

bool is_decoder_name(const std::string& n) {
  for (const char* p : {"model.layers.", "model.embed_tokens.", "model.embed_positions.", "model.norm."})
    if (n.starts_with(p)) return true;
  return false;
}

}  // namespace

WeightMap gpt2_model_names(WeightMap weights, bool bigcode) {
  WeightMap out;
  for (auto& [name, a] : weights) {
    if (is_decoder_name(name)) {
      out.insert_or_assign(name, a);
      continue;
    }
    // HF saves GPT2LMHeadModel under transformer.* (the original checkpoints without a prefix); mlx-lm
    // under model.*, with the Conv1D weights already transposed to [out, in]. GPTBigCode: transformer.*, [out, in].
    std::string rest = name;
    bool hf = !bigcode;
    if (rest.starts_with("transformer.")) rest = rest.substr(12);
    else if (!bigcode && rest.starts_with("model.")) {
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
        const bool qkv = bigcode && std::string(b.gpt2) == "attn.c_attn";
        renamed = "model.layers." + layer + "." +
                  (qkv ? bigcode_qkv(weights, name.substr(0, name.size() - rest.size()), layer, a) : b.decoder) + "." +
                  leaf;
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

WeightMap gpt2_checkpoint_names(WeightMap weights, CheckpointLayout layout, bool bigcode) {
  const bool hf = layout == CheckpointLayout::Hf && !bigcode;  // (GPTBigCode: no Conv1D)
  const std::string top = hf || bigcode ? "transformer." : "model.";
  WeightMap out;
  for (auto& [name, a] : weights) {
    std::string renamed = name;
    bool transpose = false;
    if (name.starts_with("model.embed_tokens.")) renamed = top + "wte." + name.substr(19);
    else if (name.starts_with("model.embed_positions.")) renamed = top + "wpe." + name.substr(22);
    else if (name.starts_with("model.norm.")) renamed = top + "ln_f." + name.substr(11);
    else if (name.starts_with("model.layers.")) {
      const auto dot = name.find('.', 13);
      const std::string layer = name.substr(13, dot - 13);
      std::string module = dot == std::string::npos ? "" : name.substr(dot + 1);
      const std::string per_head = "self_attn.query_key_value.";  // GPTBigCode's c_attn too
      if (bigcode && module.starts_with(per_head)) module = "self_attn.qkv_proj." + module.substr(per_head.size());
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
  for (const char* type : {"gpt2", "gpt_bigcode"})
    register_model_type(type, [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
      DecoderOptions o;
      o.layer_norm = true;
      o.learned_positions = true;
      // GPTBigCode without multi_query: c_attn per head (gpt2_model_names). A GGUF file's attn_qkv is [q; k; v]
      // whatever the heads (llama.cpp's starcoder splits it so).
      const bool per_head = w.count("model.layers.0.self_attn.query_key_value.weight") > 0;
      o.attention.fused_qkv = !per_head;
      o.attention.fused_qkv_per_head = per_head;
      o.mlp = layers::SwiGLU::Kind::Plain;
      return std::make_unique<DecoderModel>(c, std::move(w), o);
    });
}

}  // namespace mlxgp
