// Cohere (cohere: Command R / R+, Aya; cohere2: Command R7B, Command A): one bias-free LayerNorm a block that
// attention and the MLP both read (x + attention(n) + mlp(n)), RoPE in interleaved pairs, logits x logit_scale
// (config parsing). cohere's use_qk_norm adds per-head LayerNorms on q and k; cohere2's global layers (every
// sliding_window_pattern-th) have no RoPE, its others a sliding window (config parsing: rope_layers).
#include "models/decoder.h"

namespace mlxgp {

void register_cohere() {
  auto factory = [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.norms = DecoderOptions::Norms::Parallel;
    o.layer_norm = true;
    o.norm_bias = false;
    o.attention.rope_traditional = true;  // transformers' cohere rotary: repeat_interleave'd frequencies
    o.attention.qk_layer_norm = c.use_qk_norm;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  };
  register_model_type("cohere", factory);
  register_model_type("cohere2", factory);
}

}  // namespace mlxgp
