#include "generation/speculative/draft_model.h"

#include <string>

#include "mlxgp/error.h"
#include "mlxgp/loader.h"

namespace mx = mlx::core;

namespace mlxgp::speculative {

std::shared_ptr<Model> make_self_draft(Model& target, int n_layers) { return target.first_layers(n_layers); }

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
