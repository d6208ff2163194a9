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
    // The vision tower and projector (any layout): not read.
    for (const char* part : {"vision_tower.", "vision_model.", "multi_modal_projector."})
      if (renamed.starts_with(part) || renamed.starts_with(std::string("model.") + part)) renamed.clear();
    if (!renamed.empty()) out.insert_or_assign(renamed, a);
  }
  return out;
}

WeightMap language_model_checkpoint_names(WeightMap weights) {
  WeightMap out;
  for (auto& [name, a] : weights) out.insert_or_assign("language_model." + name, a);
  return out;
}

}  // namespace mlxgp
