// generate(): the one call that prepares a generation and hands it to the strategy its config asks for
// (the Generator, beam search, speculative or prompt-lookup decoding). generate_batch() and the
// BatchEngine (batch_engine.h) serve many prompts at once.
#pragma once

#include <memory>
#include <vector>

#include "mlxgp/generation_config.h"
#include "mlxgp/generation_result.h"
#include "mlxgp/generator.h"
#include "mlxgp/generator_options.h"
#include "mlxgp/model.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp {

// Runs a full generation: num_return_sequences sequences. Dispatches on the config: num_beams > 1 runs
// beam_search() (beam_search.h); use_speculative or prompt_lookup_num_tokens run speculative_generate()
// (speculative.h); otherwise the Generator below. `tokenizer` may be null (text stays empty;
// stop_strings then throw [generate]); it also becomes options.tokenizer when that is unset. Config
// defaults missing from `config` are taken from the model (with_model_defaults).
GenerationResult generate(Model& model, std::shared_ptr<const Tokenizer> tokenizer, const std::vector<int>& prompt_ids,
                          const GenerationConfig& config, const TokenCallback& callback = {},
                          GeneratorOptions options = {});

}  // namespace mlxgp
