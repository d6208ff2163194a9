// How a command loads its model: --dtype (declared by each command, whose help differs) and
// --int8-activations, shared by generate, chat, serve, logits and cache-prompt.
#pragma once

#include "args.h"
#include "mlxgp/loader.h"

namespace mlxgp::cli {

void declare_int8_flag(Args& args);
// LoadOptions from --dtype and --int8-activations (parse_dtype's [load] error for a bad dtype).
LoadOptions load_options_from(const Args& args);

}  // namespace mlxgp::cli
