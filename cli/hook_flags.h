// Steering and adapter flags shared by `generate` and `logits`: --steer/--persona-bias/--soft-prompt files
// become named extra parameters on the model plus the hooks that read them; --lora loads adapters.
#pragma once

#include "args.h"
#include "mlxgp/model.h"

namespace mlxgp::cli {

void declare_hook_flags(Args& args);
// Loads the files named by the flags and attaches the hooks; returns how many were attached.
// Throws [cli]/[hooks]/[safetensors] on a bad flag or file.
int attach_hooks_from_flags(const Args& args, Model& model);

}  // namespace mlxgp::cli
