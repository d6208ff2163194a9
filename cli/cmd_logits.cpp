// mlxgp logits: prefill the first N ids, then feed the rest one at a time through the KV cache and
// dump float32 logits [T, vocab] as safetensors key "logits" (optionally with a rotating or quantized
// KV cache and a chunked prefill, as mlx-lm generate runs them). Parity tests compare this with
// transformers' full forward over the same ids, which checks the cache path as well.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include <mlx/io/load.h>
#include <mlx/mlx.h>

#include "args.h"
#include "load_flags.h"
#include "commands.h"
#include "distributed_run.h"
#include "files.h"
#include "hook_flags.h"
#include "mlxgp/cache_options.h"
#include "mlxgp/error.h"
#include "mlxgp/loader.h"

namespace mlxgp::cli {

namespace mx = mlx::core;

int run_logits(const std::vector<std::string>& argv) {
  Args args("logits", "dump prefill + cached decode logits for token ids");
  args.option("model", "model folder, .gguf file or 'default' (default: default)")
      .option("input-ids", "comma-separated token ids, e.g. 1,2,3")
      .option("prefill", "ids run as one prefill (default: all but the last 16, at least 1)")
      .option("prefill-chunk", "run the prefill in chunks of at most N ids (mlx-lm prefill_step_size)")
      .option("max-kv-size", "rotating KV cache holding at most N positions (mlx-lm max_kv_size)")
      .option("kv-keep", "positions a rotating cache always keeps (default: 4)")
      .option("kv-bits", "quantize the KV cache to 2, 3, 4, 5, 6 or 8 bits")
      .option("kv-group-size", "KV quantization group size: 32, 64 or 128 (default: 64)")
      .option("quantized-kv-start",
              "with --kv-bits: quantize once the cache holds N positions (default: from the start)")
      .option("kv-cache-dtype", "store the KV cache as float16, bfloat16 or float32 (default: the activations' dtype)")
      .option("dtype", "float32 | bfloat16 | float16 (default: the checkpoint's own, quantized stays quantized)")
      .option("out", "output .safetensors file")
      .option("timing", "print prefill and per-token decode times to stdout", false)
      .option("tensor-parallel", "shard the model over the ranks of mlx.launch (docs/distributed.md); rank 0 writes",
              false);
  declare_hook_flags(args);
  declare_int8_flag(args);
  if (!args.parse(argv)) return 0;
  auto ids_arg = args.get_int_list("input-ids");
  if (!ids_arg) args.require("input-ids");
  const std::vector<int> ids = *ids_arg;
  const std::string out = args.require("out");
  check_output_file(out, "--out");
  if (ids.empty()) fail("cli", "--input-ids is empty");
  const int T = static_cast<int>(ids.size());
  const int prefill = args.get_int32("prefill").value_or(std::max(1, T - 16));
  if (prefill < 1 || prefill > T)
    fail("cli", "--prefill must be between 1 and the number of ids (" + std::to_string(T) + ")");

  int chunk = prefill;
  if (auto c = args.get_int("prefill-chunk")) {
    if (*c < 1) fail("cli", "--prefill-chunk must be at least 1");
    chunk = static_cast<int>(std::min<long long>(*c, prefill));
  }
  CacheOptions cache_opts;
  auto int_flag = [&](const char* name) -> std::optional<int> {
    auto v = args.get_int(name);
    if (v && (*v < -1000000000LL || *v > 1000000000LL)) fail("cli", std::string("--") + name + " is out of range");
    return v ? std::optional<int>(static_cast<int>(*v)) : std::nullopt;
  };
  cache_opts.max_kv_size = int_flag("max-kv-size");
  if (auto k = int_flag("kv-keep")) {
    if (!cache_opts.max_kv_size) fail("cli", "--kv-keep needs --max-kv-size");
    cache_opts.kv_keep = *k;
  }
  cache_opts.kv_bits = int_flag("kv-bits");
  if (auto g = int_flag("kv-group-size")) {
    if (!cache_opts.kv_bits) fail("cli", "--kv-group-size needs --kv-bits");
    cache_opts.kv_group_size = *g;
  }
  cache_opts.quantized_kv_start = int_flag("quantized-kv-start");
  cache_opts.kv_cache_dtype = args.get("kv-cache-dtype");
  validate(cache_opts);  // bad cache flags fail before the model is loaded

  std::optional<DistGroup> tp;
  if (args.has("tensor-parallel")) tp = join_distributed_run("--tensor-parallel");
  LoadOptions opts = load_options_from(args);
  auto loaded = load(args.get("model").value_or("default"), opts);
  auto& model = *loaded.model;
  attach_hooks_from_flags(args, model);
  // The prefilled ids are the prompt and the ones fed one at a time after them generated positions, as in
  // a generation (--steer-positions prompt | generated).
  model.hooks().set_prompt_length(prefill);
  std::unique_ptr<PeerWatch> watch;
  if (tp) watch = start_tensor_parallel(*tp, loaded, args, {"model", "out"}, "");
  const int vocab = model.config().vocab_size;
  for (int id : ids)
    if (id < 0 || id >= vocab)
      fail("logits",
           "token id " + std::to_string(id) + " is outside the vocabulary (size " + std::to_string(vocab) + ")");

  using clock = std::chrono::steady_clock;
  auto caches = make_caches(model, cache_opts);
  std::vector<mx::array> chunks;
  // Like mlx-lm's generate_step, a cache may be quantized after every model call.
  auto step = [&](int from, int n) {
    mx::array x(ids.data() + from, {1, n}, mx::int32);
    chunks.push_back(model.forward(x, caches));
    maybe_quantize_kv_caches(caches, cache_opts);
    mx::eval(chunks.back());  // each step depends on the cache the previous step wrote
  };
  auto t0 = clock::now();
  for (int i = 0; i < prefill; i += chunk) step(i, std::min(chunk, prefill - i));
  auto t1 = clock::now();
  for (int i = prefill; i < T; ++i) step(i, 1);
  auto t2 = clock::now();
  // A soft prompt adds its virtual positions in front, hence -1 rows.
  auto logits = mx::reshape(mx::concatenate(chunks, 1), {-1, vocab});
  mx::eval(logits);
  watch.reset();  // the other ranks may exit now
  if (args.has("timing")) {
    auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
    std::printf("prefill_tokens %d prefill_ms %.3f decode_tokens %d decode_ms_per_token %.3f\n", prefill, ms(t1 - t0),
                T - prefill, T > prefill ? ms(t2 - t1) / (T - prefill) : 0.0);
  }
  if (is_output_rank()) save_safetensors_atomic(out, {{"logits", logits}}, "logits");
  return 0;
}

}  // namespace mlxgp::cli
