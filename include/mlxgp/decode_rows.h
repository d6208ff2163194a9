// How many rows a generation decodes at once, and whether they fit: refused in one line before any work
// (generate() and generate_batch() check; the CLI, the Python package and the server go through them).
#pragma once

#include <string>

#include "mlxgp/generation_config.h"
#include "mlxgp/model.h"

namespace mlxgp {

// Rows one decoding step runs for a request: num_beams beams, else num_return_sequences samples, twice
// that with classifier-free guidance.
long long decode_rows(const GenerationConfig& config);

// Throws [generate] in one line, before any work, when `rows` sequences of up to `length` tokens decoded
// together cannot run: a [rows, vocab] logits array beyond MLX's 2^31-element limit, or an estimate of
// the logits and KV-cache memory (MLX's working copies included) beyond 80% of this machine's memory.
// `what` names the rows for the message ("beams", "rows (--batch-size x num_beams)").
void check_decode_rows_fit(Model& model, long long rows, long long length, const std::string& what);

}  // namespace mlxgp
