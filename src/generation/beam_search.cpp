// Placeholder until the beam search helper lands (owned by the beams work).
#include "mlxgp/beam_search.h"

#include "mlxgp/error.h"

namespace mlxgp {

GenerationResult beam_search(Model&, std::shared_ptr<const Tokenizer>, const std::vector<int>&, const GenerationConfig&,
                             GeneratorOptions) {
  fail("generate", "num_beams > 1 is not implemented yet");
}

}  // namespace mlxgp
