// beam_search(): resolves the config and dispatches to the variant it asks for.
#include "mlxgp/beam_search.h"

#include "generation/beam/searches.h"
#include "mlxgp/error.h"

namespace mlxgp {

GenerationResult beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                             const std::vector<int>& prompt_ids, const GenerationConfig& config,
                             GeneratorOptions options) {
  if (!options.tokenizer) options.tokenizer = tokenizer;
  GenerationConfig c = with_model_defaults(config, model.config(), tokenizer.get());
  validate(c);
  if (c.num_beams < 2) fail("generate", "beam_search() needs num_beams > 1");
  // Per-step outputs are per beam in transformers (not per returned sequence); not offered here.
  if (c.output_scores || c.output_logits || c.output_logprobs)
    fail("generate", "output_scores / output_logits / output_logprobs are not supported with num_beams > 1 (each "
                     "returned sequence carries its sequence score and beam indices instead)");
  if (c.num_beam_groups > 1) return beam::group_beam_search(model, tokenizer, prompt_ids, c, options);
  if (c.force_words_ids) return beam::constrained_beam_search(model, tokenizer, prompt_ids, c, options);
  return beam::standard_beam_search(model, tokenizer, prompt_ids, c, options);
}

}  // namespace mlxgp
