// mlxgp logits: prefill the first N ids, then feed the rest one at a time through the KV cache and
// dump float32 logits [T, vocab] as safetensors key "logits". Parity tests compare this with
// transformers' full forward over the same ids, which checks the cache path as well.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include <mlx/io/load.h>
#include <mlx/mlx.h>

#include "args.h"
#include "commands.h"
#include "files.h"
#include "hook_flags.h"
#include "mlxgp/error.h"
#include "mlxgp/loader.h"

namespace mlxgp::cli {

namespace mx = mlx::core;

int run_logits(const std::vector<std::string>& argv) {
  Args args("logits", "dump prefill + cached decode logits for token ids");
  args.option("model", "model folder, .gguf file or 'default' (default: default)")
      .option("input-ids", "comma-separated token ids, e.g. 1,2,3")
      .option("prefill", "ids run as one prefill (default: all but the last 16, at least 1)")
      .option("dtype", "float32 | bfloat16 | float16 (default: the checkpoint's own, quantized stays quantized)")
      .option("out", "output .safetensors file")
      .option("timing", "print prefill and per-token decode times to stdout", false);
  declare_hook_flags(args);
  if (!args.parse(argv)) return 0;
  auto ids_arg = args.get_int_list("input-ids");
  if (!ids_arg) args.require("input-ids");
  const std::vector<int> ids = *ids_arg;
  const std::string out = args.require("out");
  if (ids.empty()) fail("cli", "--input-ids is empty");
  const int T = static_cast<int>(ids.size());
  const int prefill = static_cast<int>(args.get_int("prefill").value_or(std::max(1, T - 16)));
  if (prefill < 1 || prefill > T)
    fail("cli", "--prefill must be between 1 and the number of ids (" + std::to_string(T) + ")");

  LoadOptions opts;
  if (auto d = args.get("dtype")) opts.dtype = parse_dtype(*d);
  auto loaded = load(args.get("model").value_or("default"), opts);
  auto& model = *loaded.model;
  attach_hooks_from_flags(args, model);
  const int vocab = model.config().vocab_size;
  for (int id : ids)
    if (id < 0 || id >= vocab)
      fail("logits", "token id " + std::to_string(id) + " is outside the vocabulary (size " + std::to_string(vocab) + ")");

  using clock = std::chrono::steady_clock;
  auto caches = model.make_caches();
  std::vector<mx::array> chunks;
  auto t0 = clock::now();
  mx::array prompt(ids.data(), {1, prefill}, mx::int32);
  chunks.push_back(model.forward(prompt, caches));
  mx::eval(chunks.back());
  auto t1 = clock::now();
  for (int i = prefill; i < T; ++i) {
    mx::array tok(&ids[i], {1, 1}, mx::int32);
    chunks.push_back(model.forward(tok, caches));
    mx::eval(chunks.back());  // each step depends on the cache the previous step wrote
  }
  auto t2 = clock::now();
  // A soft prompt adds its virtual positions in front, hence -1 rows.
  auto logits = mx::reshape(mx::concatenate(chunks, 1), {-1, vocab});
  mx::eval(logits);
  if (args.has("timing")) {
    auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
    std::printf("prefill_tokens %d prefill_ms %.3f decode_tokens %d decode_ms_per_token %.3f\n", prefill,
                ms(t1 - t0), T - prefill, T > prefill ? ms(t2 - t1) / (T - prefill) : 0.0);
  }
  save_safetensors_atomic(out, {{"logits", logits}}, "logits");
  return 0;
}

}  // namespace mlxgp::cli
