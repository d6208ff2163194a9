// Llama (incl. Llama-3 rope scaling) and SmolLM: the plain decoder. Seed-OSS (seed_oss) too: its q / k / v biases
// (attention_bias) and o_proj's (attention_out_bias) come from config parsing.
#include "models/decoder.h"

namespace mlxgp {

void register_llama() {
  register_model_type("llama", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
  register_model_type("seed_oss", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    return std::make_unique<DecoderModel>(c, std::move(w), DecoderOptions{});
  });
}

}  // namespace mlxgp
