// Structured outputs: GenerationConfig's json_schema / json_object / regex / grammar become a logits
// processor that masks, at every step and for every row, the tokens xgrammar's matcher does not allow
// (EOS only where the grammar may end), as xgrammar's transformers LogitsProcessor does.
#pragma once

#include <memory>

#include "mlxgp/generation_config.h"
#include "mlxgp/logits_processor.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp {

// Whether the config asks for structured output.
bool wants_grammar(const GenerationConfig& config);

// The mask processor for `config`'s constraint over a vocabulary of `vocab_size` logits (the model's,
// which may exceed the tokenizer's). Compiles the constraint now: throws [grammar] with xgrammar's
// message for an invalid schema, regex or grammar, and [generate] without a tokenizer or an EOS token.
// A row whose ids break the constraint is a [grammar] error naming the token, unless `tentative_ids`
// (speculative verification, whose candidates may be refused): then that row is left unmasked. With
// `dead_beams` (beam search) such a row is left unmasked too, without an error: a beam at -inf score.
std::unique_ptr<LogitsProcessor> make_grammar_constraint(const GenerationConfig& config,
                                                         std::shared_ptr<const Tokenizer> tokenizer, int vocab_size,
                                                         bool tentative_ids = false, bool dead_beams = false);

}  // namespace mlxgp
