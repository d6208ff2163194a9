// beam_search(): prepares the config and dispatches to the variant it asks for.
#include "mlxgp/beam_search.h"

#include "generation/beam/searches.h"
#include "generation/core/setup.h"
#include "mlxgp/error.h"

namespace mlxgp {

GenerationResult beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                             const std::vector<int>& prompt_ids, const GenerationConfig& config,
                             GeneratorOptions options) {
  auto [c, opts] = prepare_generation(model, tokenizer, config, std::move(options));
  if (c.num_beams < 2) fail("generate", "beam_search() needs num_beams > 1");
  if (c.num_beam_groups > 1) return beam::group_beam_search(model, tokenizer, prompt_ids, c, opts);
  if (c.force_words_ids) return beam::constrained_beam_search(model, tokenizer, prompt_ids, c, opts);
  return beam::standard_beam_search(model, tokenizer, prompt_ids, c, opts);
}

}  // namespace mlxgp
