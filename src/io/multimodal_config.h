// Multimodal checkpoints whose language model runs here (text in, text out): Gemma 3 4B and larger
// ("gemma3", Gemma3ForConditionalGeneration), Mistral Small 3.x / Ministral ("mistral3",
// Mistral3ForConditionalGeneration), Llama 4 Scout / Maverick ("llama4", Llama4ForConditionalGeneration) and Qwen2-VL /
// Qwen2.5-VL / Qwen3-VL ("qwen2_vl", "qwen2_5_vl", "qwen3_vl": a qwen2 / qwen3 decoder). Their config.json nests the
// language model's config in "text_config"; the vision tower and projector are not read (mlx-lm's gemma3 / mistral3
// modules drop them the same way).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mlxgp::io {

// The model types above.
const std::vector<std::string>& multimodal_wrappers();
bool is_multimodal_wrapper(const std::string& model_type);

// The language model's config.json: text_config with the fields transformers reads from the outer config
// (tie_word_embeddings; eos / bos / pad token ids and mlx-lm's "quantization" where the outer config sets
// them) and, for gemma3, Gemma3TextConfig's sizes where text_config leaves them out (Gemma 3's own
// config.json lists only what differs from them). Throws [config] for a missing or foreign text_config.
nlohmann::json language_model_config(const nlohmann::json& config);

}  // namespace mlxgp::io
