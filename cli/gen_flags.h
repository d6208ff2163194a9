// Generation flags shared by subcommands that generate (`mlxgp chat`; `generate` may adopt it):
// one CLI option per GenerationConfig field (HF names, '_' written '-') plus --config, and the
// layering model generation_config.json < --config file < flags.
#pragma once

#include <iosfwd>
#include <string>

#include "args.h"
#include "mlxgp/generation_config.h"
#include "mlxgp/model.h"

namespace mlxgp::cli {

// "max_new_tokens" -> "max-new-tokens".
std::string generation_flag_name(std::string field);

// Declares --config, one option per GenerationConfig field, and --ignore-eos.
void add_generation_flags(Args& args);

// Applies the user's layers (--config file, then the flags) onto `config`. --temperature T > 0 also
// turns sampling on and T == 0 means greedy (mlx-lm / llama.cpp convention); --ignore-eos clears EOS.
void apply_generation_flags(GenerationConfig& config, const Args& args);

// The model's generation_config.json (warnings about unimplemented fields go to `warnings`), then the
// user's layers; validated.
GenerationConfig build_generation_config(const std::string& model_generation_config_json, const Args& args,
                                         std::ostream& warnings);

// Rows one decoding step runs for a request: num_beams beams, else num_return_sequences samples, twice
// that with classifier-free guidance.
long long decode_rows(const GenerationConfig& config);

// Throws [generate] in one line, before any work, when `rows` sequences of up to `length` tokens decoded
// together cannot run: a [rows, vocab] logits array beyond MLX's 2^31-element limit, or an estimate of
// the logits and KV-cache memory (MLX's working copies included) beyond 80% of this machine's memory.
// `what` names the rows for the message ("beams", "rows (--batch-size x num_beams)").
void check_decode_rows_fit(Model& model, long long rows, long long length, const std::string& what);

// Warns on `warnings` when sampling-only flags were given but generation is greedy.
void warn_sampling_flags_unused(const GenerationConfig& config, const Args& args, std::ostream& warnings);

}  // namespace mlxgp::cli
