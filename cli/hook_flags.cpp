#include "hook_flags.h"

#include <memory>

#include "mlxgp/error.h"
#include "mlxgp/lora.h"
#include "mlxgp/safetensors_io.h"
#include "mlxgp/steering.h"

namespace mx = mlx::core;

namespace mlxgp::cli {

namespace {

// The tensor stored under `key`, or the file's only tensor.
mx::array read_vector_file(const std::string& path, const std::string& key, const std::string& flag) {
  auto contents = load_safetensors_file(path);
  auto it = contents.tensors.find(key);
  if (it == contents.tensors.end() && contents.tensors.size() == 1) it = contents.tensors.begin();
  if (it != contents.tensors.end()) {
    // An all-NaN vector would otherwise run to exit 0 with garbage text.
    require_finite(it->second, "cli", flag + " file '" + path + "': tensor '" + it->first + "'");
    return it->second;
  }
  fail("cli", flag + " file '" + path + "' has no tensor '" + key + "' and more than one tensor");
}

}  // namespace

void declare_hook_flags(Args& args) {
  args.option("steer",
              "safetensors file with a steering vector [hidden] (key steering_vector) added to the residual stream")
      .option("steer-layer", "layer(s) after which the steering vector is added, e.g. 12 or 10,12")
      .option("steer-alpha", "scale of the steering vector (default: 1)")
      .option("steer-positions", "all | prompt | generated (default: all)")
      .option("persona-bias", "safetensors file with a persona vector [hidden]: adds alpha * lm_head(v) to the logits")
      .option("persona-alpha", "scale of the persona logit bias (default: 1)")
      .option("soft-prompt", "safetensors file with virtual-token embeddings [n, hidden] (key soft_prompt) to prepend")
      .option("lora", "LoRA adapters (adapters.safetensors from mlxgp train --mode lora) applied to the model");
}

int attach_hooks_from_flags(const Args& args, Model& model) {
  int attached = 0;
  if (auto path = args.get("lora")) {
    load_lora(model, *path);
    ++attached;
  }
  if (auto path = args.get("steer")) {
    auto layers = args.get_int_list("steer-layer");
    if (!layers) fail("cli", "--steer needs --steer-layer");
    model["_steer_v"] = read_vector_file(*path, "steering_vector", "--steer");
    auto positions = parse_hook_positions(args.get("steer-positions").value_or("all"));
    add_hook(model, std::make_shared<ResidualInjectionHook>(*layers, VectorSource("_steer_v"),
                                                            args.get_double("steer-alpha").value_or(1.0), positions));
    ++attached;
  } else {
    for (const char* f : {"steer-layer", "steer-alpha", "steer-positions"})
      if (args.has(f)) fail("cli", std::string("--") + f + " needs --steer");
  }
  if (auto path = args.get("persona-bias")) {
    model["_persona_v"] = read_vector_file(*path, "steering_vector", "--persona-bias");
    add_hook(model, std::make_shared<LogitBiasHook>(VectorSource("_persona_v"),
                                                    args.get_double("persona-alpha").value_or(1.0)));
    ++attached;
  } else if (args.has("persona-alpha")) {
    fail("cli", "--persona-alpha needs --persona-bias");
  }
  if (auto path = args.get("soft-prompt")) {
    auto p = read_vector_file(*path, "soft_prompt", "--soft-prompt");
    if (p.ndim() != 2) fail("cli", "--soft-prompt tensor must be [n_virtual, hidden]");
    model["_soft_prompt"] = p;
    add_hook(model, std::make_shared<SoftPromptHook>(p.shape(0), "_soft_prompt"));
    ++attached;
  }
  return attached;
}

}  // namespace mlxgp::cli
