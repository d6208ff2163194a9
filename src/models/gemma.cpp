// Gemma family: the llama stack with (1 + w) RMSNorms, embeddings scaled by sqrt(hidden_size) and a
// GeGLU MLP (gelu_pytorch_tanh); gemma2 adds output norms around attention and MLP ("sandwich"),
// attention and final-logit soft-capping and alternating sliding-window layers; gemma3_text adds (1 + w)
// q/k norms and its sliding layers' own rope base. Soft-capping, query_pre_attn_scalar, the sliding
// layers and the rope bases come from the config (models/layers.cpp, io/model_config.cpp).
#include "models/decoder.h"

namespace mlxgp {

void register_gemma() {
  DecoderOptions gemma;
  gemma.norm_plus_one = true;
  gemma.scale_embeddings = true;
  register_model_type("gemma", [gemma](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), gemma);
  });
  DecoderOptions gemma2 = gemma;
  gemma2.norms = DecoderOptions::Norms::Sandwich;
  register_model_type("gemma2", [gemma2](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), gemma2);
  });
  DecoderOptions gemma3 = gemma2;
  gemma3.attention.qk_norm = true;
  gemma3.attention.norm_plus_one = true;
  register_model_type("gemma3_text", [gemma3](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), gemma3);
  });
}

}  // namespace mlxgp
