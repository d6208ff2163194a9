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

// Warns on `warnings` when sampling-only flags were given but generation is greedy, or beam-only ones
// (length_penalty, early_stopping) without beams, as transformers does.
void warn_sampling_flags_unused(const GenerationConfig& config, const Args& args, std::ostream& warnings);

}  // namespace mlxgp::cli
