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
             ", longer than the model's context (" + std::to_string(context) + ")");
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
  if (config.max_kv_size) return budget;
  return context > 0 ? std::min(budget, context - n - added_positions) : budget;
}

int check_prompt(const Model& model, const std::vector<int>& prompt_ids, const GenerationConfig& config) {
  return check_prompt_and_budget(model.config(), config, prompt_ids, model.hooks().added_positions());
}

}  // namespace mlxgp
