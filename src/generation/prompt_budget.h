// The prompt checks and the token budget every decoding loop (Generator, beam search, speculative)
// starts with.
#pragma once

#include <vector>

#include "mlxgp/generation_config.h"
#include "mlxgp/model_config.h"

namespace mlxgp {

// Throws [generate] for an empty prompt, ids outside the vocabulary, a prompt that fills the model's
// context, or max_length not above the prompt. Returns how many tokens may be generated: HF's
// max_new_tokens when set, else max_length - prompt, capped by the context left. `added_positions`: the
// positions hooks put before the prompt (HookList::added_positions: a soft prompt's), which take context too.
int check_prompt_and_budget(const ModelConfig& model, const GenerationConfig& config, const std::vector<int>& prompt,
                            int added_positions = 0);

}  // namespace mlxgp
