// StableLM (stablelm: StableLM-2 1.6B / 12B, StableLM-3B-4E1T, Zephyr): the llama stack with LayerNorms (weight
// and bias), RoPE on the first quarter of each head (partial_rotary_factor), optional q / k / v biases
// (use_qkv_bias), optional per-head bias-free q / k LayerNorms (qk_layernorm) and, for use_parallel_residual, one
// norm a block that attention and the MLP both read (config parsing). Checkpoints keep each head's q / k norm as
// its own LayerNorm (self_attn.q_layernorm.norms.<h>.weight, transformers and mlx-lm alike); the decoder reads
// them stacked [heads, head_dim] as cohere's, so they are stacked here and split again for saving.
#include <map>

#include "mlxgp/error.h"
#include "models/decoder.h"
#include "models/model_names.h"

namespace mlxgp {

namespace {

// "<prefix>.<q|k>_layernorm.norms.<h>.weight" -> {"<prefix>.<q|k>_norm.weight", h}; nullopt for other names.
std::optional<std::pair<std::string, int>> per_head_norm(const std::string& name) {
  for (const char* which : {"q", "k"}) {
    const std::string mid = std::string(".") + which + "_layernorm.norms.";
    const auto at = name.find(mid);
    if (at == std::string::npos || !name.ends_with(".weight")) continue;
    const std::string head = name.substr(at + mid.size(), name.size() - 7 - at - mid.size());
    if (head.empty() || head.find_first_not_of("0123456789") != std::string::npos || head.size() > 6) continue;
    return std::pair{name.substr(0, at) + "." + which + "_norm.weight", std::stoi(head)};
  }
  return std::nullopt;
}

}  // namespace

WeightMap stablelm_model_names(WeightMap weights) {
  std::map<std::string, std::map<int, mx::array>> heads;  // stacked name -> head -> weight
  WeightMap out;
  for (auto& [name, a] : weights) {
    if (auto h = per_head_norm(name)) heads[h->first].insert_or_assign(h->second, a);
    else out.insert_or_assign(name, a);
  }
  for (auto& [name, per_head] : heads) {
    std::vector<mx::array> rows;
    for (auto& [h, a] : per_head) {
      if (h != static_cast<int>(rows.size()))
        fail("model", "'" + name.substr(0, name.size() - 12) + "_layernorm.norms' lacks head " +
                          std::to_string(rows.size()) + "'s weight");
      rows.push_back(a);
    }
    out.insert_or_assign(name, mx::stack(rows));
  }
  return out;
}

WeightMap stablelm_checkpoint_names(WeightMap weights) {
  WeightMap out;
  for (auto& [name, a] : weights) {
    const bool stacked =
        a.ndim() == 2 && (name.ends_with(".self_attn.q_norm.weight") || name.ends_with(".self_attn.k_norm.weight"));
    if (!stacked) {
      out.insert_or_assign(name, a);
      continue;
    }
    const std::string base = name.substr(0, name.size() - 12) + "_layernorm.norms.";  // drops "_norm.weight"
    for (int h = 0; h < a.shape(0); ++h)
      out.insert_or_assign(base + std::to_string(h) + ".weight", mx::contiguous(mx::take(a, h, 0)));
  }
  return out;
}

void register_stablelm() {
  register_model_type("stablelm", [](const ModelConfig& c, WeightMap w) -> std::unique_ptr<Model> {
    DecoderOptions o;
    o.layer_norm = true;
    if (c.parallel_residual) o.norms = DecoderOptions::Norms::Parallel;
    o.attention.qk_layer_norm = c.use_qk_norm;
    return std::make_unique<DecoderModel>(c, std::move(w), o);
  });
}

}  // namespace mlxgp
