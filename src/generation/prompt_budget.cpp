#include "generation/prompt_budget.h"

#include <algorithm>
#include <string>

#include "mlxgp/error.h"
#include "mlxgp/generate.h"

namespace mlxgp {

int check_prompt_and_budget(const ModelConfig& mc, const GenerationConfig& config, const std::vector<int>& prompt,
                            int added_positions) {
  if (prompt.empty()) fail("generate", "the prompt is empty");
  for (int id : prompt)
    if (id < 0 || id >= mc.vocab_size)
      fail("generate", "token id " + std::to_string(id) + " is outside the vocabulary (size " +
                           std::to_string(mc.vocab_size) + ")");
  const int n = static_cast<int>(prompt.size());
  const int context = mc.max_position_embeddings;
  if (context > 0 && n + added_positions >= context)
    fail("generate",
         "prompt has " + std::to_string(n) + " tokens" +
             (added_positions ? " after " + std::to_string(added_positions) + " soft-prompt positions" : "") +
             (n + added_positions > context ? ", longer than the model's context (" + std::to_string(context) + ")"
                                            : ", which fill the model's context (" + std::to_string(context) +
                                                  "): no position is left for a new token"));
  // HF: max_new_tokens wins; otherwise max_length counts the prompt and must exceed it.
  int budget = 0;
  if (config.max_new_tokens) {
    budget = *config.max_new_tokens;
  } else {
    if (n >= config.max_length)
      fail("generate", "prompt has " + std::to_string(n) + " tokens but max_length is " +
                           std::to_string(config.max_length) + "; raise max_length or set max_new_tokens");
    budget = config.max_length - n;
  }
  // The model's context bounds what the KV cache holds. A rotating cache (max_kv_size) holds a window of
  // it whatever the length, so generation goes on past the context with positions still counting, as
  // mlx-lm's generate_step does with max_kv_size; without one, the budget stops at the context.
  if (config.max_kv_size || context <= 0) return budget;
  // Past the context the budget is cut (finish_reason "length", as llama.cpp stops at its n_ctx), but a
  // minimum that cannot fit is refused: stopping short of it would break the setting silently.
  const int room = context - n - added_positions;
  const int minimum = config.min_new_tokens ? *config.min_new_tokens : config.min_length - n;
  if (minimum > room)
    fail("generate", (config.min_new_tokens ? "min_new_tokens " + std::to_string(*config.min_new_tokens)
                                            : "min_length " + std::to_string(config.min_length)) +
                         " cannot be met: the prompt (" + std::to_string(n + added_positions) + " positions) leaves " +
                         std::to_string(room) + " of the model's context (" + std::to_string(context) + ")");
  return std::min(budget, room);
}

int check_prompt(const Model& model, const std::vector<int>& prompt_ids, const GenerationConfig& config) {
  return check_prompt_and_budget(model.config(), config, prompt_ids, model.hooks().added_positions());
}

}  // namespace mlxgp
