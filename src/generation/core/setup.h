// What generate() prepares once before a strategy searches, as transformers' generate() does before it
// hands over to _sample / _beam_search / _assisted_decoding: the merged and validated config and the
// stopping criteria.
#pragma once

#include <memory>
#include <vector>

#include "mlxgp/generate.h"

namespace mlxgp {

struct PreparedGeneration {
  GenerationConfig config;   // model defaults under the user's settings, validated
  GeneratorOptions options;  // options.tokenizer defaulted to the model's tokenizer
};

// Throws [config] on an invalid config.
PreparedGeneration prepare_generation(const Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                      const GenerationConfig& config, GeneratorOptions options);

// A sharded model's ranks must sample alike: each config without a seed gets one that every rank agrees
// on (agreed_random_seeds: one collective for all of them). Nothing on a whole model, where an unseeded
// run draws a fresh seed itself. Every rank must call it with the same configs.
void agree_missing_seeds(const Model& model, std::vector<GenerationConfig>& configs);

// EOS ids, max_time, stop strings (throws [generate] without options.tokenizer, as transformers raises
// when generate() gets stop_strings but no tokenizer) and the stop callback. The budget is set later,
// from the prompt (check_prompt).
StoppingCriteria stopping_criteria(const GenerationConfig& config, const GeneratorOptions& options);

// Throws [generate] when a token id the request's processors were given (logit_bias, bad_words_ids,
// sequence_bias, force_words_ids, forced BOS / EOS, ...) lies outside the model's vocabulary
// (LogitsProcessor::check_vocabulary). For the lanes that build their processors only when they start
// (beam search, speculative decoding): a batch then refuses the request at submit, instead of failing a
// step that other requests share.
void check_processor_vocabulary(Model& model, const GenerationConfig& config, const GeneratorOptions& options);

}  // namespace mlxgp
