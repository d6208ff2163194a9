// The one JSON form of a generation result, printed by `mlxgp generate --json`, returned (as a dict) by
// the Python package and sent by the server: prompt_token_ids, sequences (token_ids, text,
// finish_reason; per generated token "scores" / "logits" / "logprobs" when the config asked for them;
// "score" and "beam_indices" for beam search) and stats.
#pragma once

#include <string>

#include "mlxgp/generate.h"

namespace mlxgp {

// One line of JSON (no newline). Invalid UTF-8 in a text (a generation cut mid-character) is replaced,
// and non-finite numbers print as null.
std::string result_json(const GenerationResult& result, const GenerationConfig& config);

}  // namespace mlxgp
