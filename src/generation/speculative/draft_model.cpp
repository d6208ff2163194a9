#include "generation/speculative/draft_model.h"

#include <string>

#include "mlxgp/error.h"
#include "mlxgp/loader.h"

namespace mx = mlx::core;

namespace mlxgp::speculative {

namespace {

// The block index of an HF parameter name "model.layers.<i>.<...>", or -1 for other parameters.
int layer_index(const std::string& name) {
  static const std::string prefix = "model.layers.";
  if (name.compare(0, prefix.size(), prefix) != 0) return -1;
  size_t end = name.find('.', prefix.size());
  if (end == std::string::npos || end == prefix.size()) return -1;
  try {
    return std::stoi(name.substr(prefix.size(), end - prefix.size()));
  } catch (...) {
    return -1;
  }
}

}  // namespace

std::shared_ptr<Model> make_self_draft(Model& target, int n_layers) {
  const int total = target.config().num_hidden_layers;
  if (n_layers < 1 || n_layers > total)
    fail("config", "draft_layers must be between 1 and the model's " + std::to_string(total) + " layers (got " +
                       std::to_string(n_layers) + ")");
  ModelConfig config = target.config();
  config.num_hidden_layers = n_layers;
  WeightMap weights;
  for (const auto& [name, array] : target.parameters())
    if (layer_index(name) < n_layers) weights.emplace(name, array);  // mx::array copies share the buffer
  return std::shared_ptr<Model>(create_model(config, std::move(weights)));
}

void check_draft_vocab(const Model& draft, const Model& target) {
  if (draft.config().vocab_size != target.config().vocab_size)
    fail("config", "the draft model's vocabulary (" + std::to_string(draft.config().vocab_size) +
                       " tokens) differs from the target's (" + std::to_string(target.config().vocab_size) +
                       "); speculative decoding needs the same tokenizer");
}

std::shared_ptr<Model> load_draft(const std::string& path, const Model& target) {
  auto loaded = load(path);
  check_draft_vocab(*loaded.model, target);
  return loaded.model;
}

}  // namespace mlxgp::speculative
