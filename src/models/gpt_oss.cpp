// gpt_oss (OpenAI's gpt-oss): the llama stack with q/k/v/o biases, a learned sink logit per attention head
// (transformers' eager_attention_forward: it joins each softmax and is dropped after), alternating sliding
// and full layers, YaRN, and a mixture of experts in every layer (models/moe.h: a router with a bias,
// softmax over the top-k logits, experts with biases and a clamped SwiGLU).
#include "models/decoder.h"

namespace mlxgp {

void register_gpt_oss() {
  register_model_type("gpt_oss", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.attention.sinks = true;
    o.moe.gpt_oss = true;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
