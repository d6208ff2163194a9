// beam_search(): prepares the config and dispatches to the variant it asks for.
#include "mlxgp/beam_search.h"

#include "generation/beam/search_state.h"
#include "generation/core/setup.h"
#include "mlxgp/error.h"

namespace mlxgp {

GenerationResult beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                             const std::vector<int>& prompt_ids, const GenerationConfig& config,
                             GeneratorOptions options) {
  auto [c, opts] = prepare_generation(model, tokenizer, config, std::move(options));
  if (c.num_beams < 2) fail("generate", "beam_search() needs num_beams > 1");
  auto search = beam::make_beam_search(model, tokenizer, c, opts);
  return beam::run_beam_search(*search, prompt_ids);
}

}  // namespace mlxgp
