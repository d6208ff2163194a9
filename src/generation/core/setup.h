// What generate() prepares once before a strategy searches, as transformers' generate() does before it
// hands over to _sample / _beam_search / _assisted_decoding: the merged and validated config and the
// stopping criteria.
#pragma once

#include <memory>

#include "mlxgp/generate.h"

namespace mlxgp {

struct PreparedGeneration {
  GenerationConfig config;   // model defaults under the user's settings, validated
  GeneratorOptions options;  // options.tokenizer defaulted to the model's tokenizer
};

// Throws [config] on an invalid config.
PreparedGeneration prepare_generation(const Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                      const GenerationConfig& config, GeneratorOptions options);

// EOS ids, max_time, stop strings (throws [generate] without options.tokenizer, as transformers raises
// when generate() gets stop_strings but no tokenizer) and the stop callback. The budget is set later,
// from the prompt (check_prompt).
StoppingCriteria stopping_criteria(const GenerationConfig& config, const GeneratorOptions& options);

}  // namespace mlxgp
