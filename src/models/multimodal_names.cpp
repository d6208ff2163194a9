// The language model of a multimodal checkpoint (gemma3, mistral3; io/multimodal_config.h): its tensors'
// names in checkpoint files <-> the decoder's.
#include "models/model_names.h"

namespace mlxgp {

WeightMap language_model_names(WeightMap weights) {
  WeightMap out;
  for (auto& [name, a] : weights) {
    // transformers' save_pretrained (5.24 and the original uploads) and mlx-lm: language_model.model.* and
    // language_model.lm_head.*; transformers 4.52 - 4.57: model.language_model.* and lm_head.*.
    std::string renamed = name;
    if (name.starts_with("language_model.")) renamed = name.substr(15);
    else if (name.starts_with("model.language_model.")) renamed = "model." + name.substr(21);
    // The vision tower and projector (any layout; Qwen-VL's visual.*): not read.
    for (const char* part : {"vision_tower.", "vision_model.", "multi_modal_projector.", "visual."})
      if (renamed.starts_with(part) || renamed.starts_with(std::string("model.") + part)) renamed.clear();
    if (!renamed.empty()) out.insert_or_assign(renamed, a);
  }
  return out;
}

WeightMap language_model_checkpoint_names(WeightMap weights, const std::string& multimodal_type,
                                          CheckpointLayout layout) {
  // transformers' save_pretrained: Qwen2-VL / Qwen2.5-VL in their original layout (the decoder's own model.* and
  // lm_head), Qwen3-VL, Gemma 4 and Qwen3.5 as model.language_model.* and lm_head; the others and mlx-lm:
  // language_model.<name>.
  const bool hf = layout == CheckpointLayout::Hf;
  if (hf && (multimodal_type == "qwen2_vl" || multimodal_type == "qwen2_5_vl")) return weights;
  WeightMap out;
  for (auto& [name, a] : weights) {
    if (hf && (multimodal_type == "qwen3_vl" || multimodal_type == "gemma4" || multimodal_type == "qwen3_5" ||
               multimodal_type == "qwen3_5_moe"))
      out.insert_or_assign(name.starts_with("model.") ? "model.language_model." + name.substr(6) : name, a);
    else out.insert_or_assign("language_model." + name, a);
  }
  return out;
}

}  // namespace mlxgp
