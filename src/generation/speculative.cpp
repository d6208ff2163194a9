// Placeholder until the speculative decoding helper lands (owned by the speculative work).
#include "mlxgp/speculative.h"

#include "mlxgp/error.h"

namespace mlxgp {

GenerationResult speculative_generate(Model&, std::shared_ptr<const Tokenizer>, const std::vector<int>&,
                                      const GenerationConfig&, const TokenCallback&, GeneratorOptions,
                                      std::shared_ptr<Model>) {
  fail("generate", "speculative and prompt-lookup decoding are not implemented yet");
}

}  // namespace mlxgp
