// Draft models for speculative decoding: the target's own first N layers (self-speculation), or a
// separate checkpoint that shares the target's vocabulary.
#pragma once

#include <memory>
#include <string>

#include "mlxgp/model.h"

namespace mlxgp::speculative {

// A model of the target's architecture with num_hidden_layers = n_layers, built from the target's
// embeddings, first n_layers blocks, final norm and head. The arrays are shared with the target (no
// copy). The draft is a separate Model, so it has its own, empty HookList and extra parameters: hooks
// installed on the target (steering, capture, soft prompts) never fire for draft forwards, and the
// target's verification forward is what they act on. Throws [config] unless 1 <= n_layers <= the
// target's layer count.
std::shared_ptr<Model> make_self_draft(Model& target, int n_layers);

// Loads `path` (anything load() accepts) as a draft for `target`: throws [config] when the vocabulary
// sizes differ (the candidates are target token ids).
std::shared_ptr<Model> load_draft(const std::string& path, const Model& target);

// Throws [config] when `draft` cannot propose tokens for `target` (different vocabulary size).
void check_draft_vocab(const Model& draft, const Model& target);

}  // namespace mlxgp::speculative
