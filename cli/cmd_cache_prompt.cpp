// `mlxgp cache-prompt`: prefill a prompt prefix once and save its KV caches (prompt_cache.h), so
// `mlxgp generate --prompt-cache F` prefills only what follows it.
#include <cstdio>
#include <filesystem>

#include "args.h"
#include "load_flags.h"
#include "commands.h"
#include "files.h"
#include "mlxgp/error.h"
#include "mlxgp/loader.h"
#include "mlxgp/lora.h"
#include "mlxgp/prompt_cache.h"

namespace mlxgp::cli {

int run_cache_prompt(const std::vector<std::string>& argv) {
  Args args("cache-prompt", "save the KV cache of a prompt prefix for `generate --prompt-cache`");
  args.option("model", "default | model folder | file.gguf (default: default)")
      .option("prompt", "prefix text (encoded as `generate --prompt` encodes it, special tokens added)")
      .option("input-ids", "comma-separated prefix token ids (instead of --prompt)")
      .option("dtype", "float32 | bfloat16 | float16 (must match the later generate's --dtype)")
      .option("prefill-chunk-size", "prefill in chunks of this many tokens (default 512, as generate)")
      .option("lora", "LoRA adapters to prefill with (the later generate passes the same --lora)")
      .option("out", "output .safetensors file (written atomically)");
  declare_int8_flag(args);
  if (!args.parse(argv)) return 0;
  if (args.has("prompt") == args.has("input-ids")) fail("cli", "pass exactly one of --prompt and --input-ids");
  const std::string out = args.require("out");
  check_output_file(out, "--out");
  int chunk = 512;
  if (auto n = args.get_int("prefill-chunk-size")) {
    if (*n < 1 || *n > INT32_MAX) fail("cli", "--prefill-chunk-size must be between 1 and 2^31-1");
    chunk = static_cast<int>(*n);
  }
  auto input_ids = args.get_int_list("input-ids");
  if (input_ids && input_ids->empty()) fail("cli", "--input-ids is empty");

  LoadOptions load_options = load_options_from(args);
  LoadedModel loaded = load(args.get("model").value_or("default"), load_options);
  if (auto path = args.get("lora")) load_lora(*loaded.model, *path);  // part of the cache's identity
  std::vector<int> ids;
  if (input_ids) {
    ids = *input_ids;
  } else {
    if (!loaded.tokenizer) fail("cache-prompt", "the model has no tokenizer; pass --input-ids instead of --prompt");
    ids = loaded.tokenizer->encode(*args.get("prompt"));
  }
  auto cache = make_prompt_cache(*loaded.model, ids, chunk);
  save_prompt_cache(out, cache);
  std::fprintf(stderr, "[cache-prompt] saved %zu tokens to %s\n", ids.size(), out.c_str());
  return 0;
}

}  // namespace mlxgp::cli
