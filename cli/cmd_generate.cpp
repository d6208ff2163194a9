// `mlxgp generate`: load a model, build the generation config from its layers (the model's
// generation_config.json < --config file < flags), generate, and stream text or print one JSON object.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "stream_out.h"
#include "args.h"
#include "load_flags.h"
#include "commands.h"
#include "distributed_run.h"
#include "files.h"
#include "gen_flags.h"
#include "hook_flags.h"
#include "mlxgp/chat_template.h"
#include "mlxgp/error.h"
#include "mlxgp/generate.h"
#include "mlxgp/generation_config.h"
#include "mlxgp/kv_cache.h"
#include "mlxgp/loader.h"
#include "mlxgp/prompt_cache.h"
#include "mlxgp/result_json.h"
#include "mlxgp/safetensors_io.h"
#include "mlxgp/batch_engine.h"
#include "prompts_file.h"

namespace mx = mlx::core;

namespace mlxgp::cli {

namespace {

void print_stats(const GenerationResult& r) {
  const auto& s = r.stats;
  std::string reasons;
  for (auto& seq : r.sequences) reasons += (reasons.empty() ? "" : ",") + to_string(seq.finish_reason);
  std::fprintf(stderr,
               "[stats] prompt %d tokens (%.1f tok/s prefill), generated %d tokens (%.1f tok/s decode), "
               "peak memory %.1f MiB, finish_reason %s\n",
               s.prompt_tokens, s.prefill_tokens_per_s, s.generated_tokens, s.decode_tokens_per_s,
               s.peak_memory_bytes / (1024.0 * 1024.0), reasons.c_str());
  if (auto& sp = s.speculative)
    std::fprintf(
        stderr, "[stats] speculative: %d/%d drafted tokens accepted (%.1f%%), %.2f tokens per target forward\n",
        sp->accepted_tokens, sp->drafted_tokens, 100.0 * sp->acceptance_rate(), sp->tokens_per_target_forward());
}

// --scores-out: every sequence's full per-step arrays (HF output_scores / output_logits, [n, V] each).
void save_scores(const std::string& path, const GenerationResult& r) {
  std::unordered_map<std::string, mx::array> tensors;
  for (size_t i = 0; i < r.sequences.size(); ++i) {
    auto& s = r.sequences[i];
    const std::string n = std::to_string(i);
    tensors.emplace("token_ids." + n, mx::array(s.token_ids.data(), {static_cast<int>(s.token_ids.size())}, mx::int32));
    if (s.scores) tensors.emplace("scores." + n, *s.scores);
    if (s.logits) tensors.emplace("logits." + n, *s.logits);
  }
  save_safetensors_atomic(path, tensors, "cli");
}

// --negative-prompt / --negative-input-ids: CFG's unconditional prompt (HF negative_prompt_ids).
std::optional<std::vector<int>> negative_prompt(const Args& args, const GenerationConfig& config,
                                                const Tokenizer* tok) {
  if (!args.has("negative-prompt") && !args.has("negative-input-ids")) return std::nullopt;
  if (args.has("negative-prompt") && args.has("negative-input-ids"))
    fail("cli", "pass at most one of --negative-prompt and --negative-input-ids");
  if (!config.guidance_scale || *config.guidance_scale == 1.0)
    fail("cli",
         "--negative-prompt / --negative-input-ids need --guidance-scale other than 1 (classifier-free guidance)");
  if (auto ids = args.get_int_list("negative-input-ids")) {
    if (ids->empty()) fail("cli", "--negative-input-ids must not be empty");
    return ids;
  }
  if (!tok) fail("generate", "the model has no tokenizer; pass --negative-input-ids instead of --negative-prompt");
  auto ids = tok->encode(*args.get("negative-prompt"));
  if (ids.empty()) fail("cli", "--negative-prompt encodes to no tokens");
  return ids;
}

std::string ids_text(const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) s += std::to_string(id) + ",";
  return s;
}

}  // namespace

// transformers' apply_chat_template(messages, add_generation_prompt=True, tokenize=True): the rendered
// text already holds the special tokens, so it is encoded without adding more.
static std::vector<int> chat_prompt_ids(const Tokenizer& tokenizer, const std::string& prompt,
                                        const std::optional<std::string>& system) {
  if (tokenizer.chat_template().empty()) fail("generate", "the model's tokenizer has no chat template; drop --chat");
  std::vector<ChatMessage> messages;
  if (system) messages.push_back({"system", *system});
  messages.push_back({"user", prompt});
  std::string text = apply_chat_template(tokenizer.chat_template(), messages, true, tokenizer.special_tokens());
  return tokenizer.encode(text, /*add_special_tokens=*/false);
}

int run_generate(const std::vector<std::string>& argv) {
  Args args("generate",
            "Generate text from a prompt or token ids. Settings come from the model's generation_config.json,\n"
            "then --config, then the flags below (HF GenerationConfig names, '_' written '-').");
  args.option("model", "default | model folder | file.gguf (default: default)")
      .option("prompt", "prompt text (encoded with the model's tokenizer, special tokens added as HF does)")
      .option("input-ids", "comma-separated prompt token ids, e.g. 1,2,3 (instead of --prompt)")
      .option("prompts-file",
              "many prompts at once: a JSONL file, one {\"prompt\": ...} or {\"input_ids\": [...]} "
              "per line, each with an optional \"config\" object (HF GenerationConfig fields) over the "
              "command line's settings; decoded together in batches")
      .option("batch-size", "with --prompts-file: rows decoded together at most (default 16)")
      .option("chat", "wrap --prompt in the model's chat template as one user turn (add_generation_prompt)", false)
      .option("system", "with --chat: a system message before the user turn")
      .option("negative-prompt", "classifier-free guidance: the unconditional prompt text (needs --guidance-scale)")
      .option("negative-input-ids", "classifier-free guidance: the unconditional prompt as token ids");
  add_generation_flags(args);
  declare_hook_flags(args);
  args.option("dtype",
              "float32 | bfloat16 | float16: compute dtype, dequantizing quantized weights "
              "(default: the checkpoint's own)")
      .option("prefill-chunk-size", "prefill long prompts in chunks of this many tokens (default 512)")
      .option("prompt-cache",
              "start from a prompt cache saved by `mlxgp cache-prompt` (the prompt must begin "
              "with its tokens; it must come from the same model, dtype and LoRA adapters; not with --soft-prompt "
              "or --steer on prompt positions, which the saved cache does not hold)")
      .option("memory-trace",
              "comma-separated generated-token counts at which stats.memory_trace records MLX's "
              "peak and active memory (--json)")
      .option("show-config", "print the effective generation config (all layers merged) to stderr", false)
      .option("scores-out",
              "write each sequence's per-step processed scores / raw logits [n, vocab] to this "
              ".safetensors file (scores.I, logits.I, token_ids.I); turns on --output-scores "
              "unless --output-logits is given")
      .option("json", "print one JSON object (prompt_token_ids, sequences, stats) instead of streaming text", false)
      .option("tensor-parallel",
              "shard the model's layers over the ranks of `mlx.launch -n N ... -- mlxgp generate ...` "
              "(docs/distributed.md); rank 0 prints",
              false);
  declare_int8_flag(args);
  if (!args.parse(argv)) return 0;

  const bool batch = args.has("prompts-file");
  if (args.has("prompt") + args.has("input-ids") + batch != 1)
    fail("cli", "pass exactly one of --prompt, --input-ids and --prompts-file");
  if (args.has("system") && !args.has("chat")) fail("cli", "--system needs --chat");
  if (args.has("chat") && args.has("input-ids")) fail("cli", "--chat needs --prompt or --prompts-file");
  if (args.has("batch-size") && !batch) fail("cli", "--batch-size needs --prompts-file");
  if (batch && args.has("scores-out")) fail("cli", "--scores-out takes one prompt, not --prompts-file");
  int batch_size = 16;
  if (auto n = args.get_int("batch-size")) {
    if (*n < 1 || *n > 4096) fail("cli", "--batch-size must be between 1 and 4096");
    batch_size = static_cast<int>(*n);
  }
  auto input_ids = args.get_int_list("input-ids");
  GeneratorOptions gen_options;
  if (auto n = args.get_int("prefill-chunk-size")) {
    if (*n < 1 || *n > INT32_MAX) fail("cli", "--prefill-chunk-size must be between 1 and 2^31-1");
    gen_options.prefill_chunk_size = static_cast<int>(*n);
    gen_options.kv_prefill_step_size = static_cast<int>(*n);  // mlx-lm's prefill_step_size with kv caches
  }
  if (auto at = args.get_int_list("memory-trace")) {
    for (int t : *at)
      if (t < 1) fail("cli", "--memory-trace token counts must be at least 1");
    gen_options.memory_trace_at = *at;
  }
  auto prompt_cache_path = args.get("prompt-cache");
  if (prompt_cache_path && prompt_cache_path->empty()) fail("cli", "--prompt-cache needs a file name");
  LoadOptions load_options = load_options_from(args);
  auto scores_out = args.get("scores-out");
  if (scores_out) check_output_file(*scores_out, "--scores-out");  // fail before generating, not after
  // The text output has no place for per-step outputs or memory traces (--scores-out holds scores and
  // logits): asked for without a place to go, they are refused rather than computed and dropped.
  for (const char* f : {"output-scores", "output-logits", "output-logprobs", "memory-trace"}) {
    const bool saved = scores_out && (std::string(f) == "output-scores" || std::string(f) == "output-logits");
    if (args.has(f) && !args.has("json") && !saved)
      fail("cli",
           std::string("--") + f + " needs --json" +
               (std::string(f) == "output-scores" || std::string(f) == "output-logits" ? " (or --scores-out)" : "") +
               ": the text output has no place for it");
  }
  auto user_layers = [&](GenerationConfig& c) {
    apply_generation_flags(c, args);
    if (scores_out && !c.output_scores && !c.output_logits) c.output_scores = true;
  };
  {
    // Check the user's settings before spending time on loading the model.
    GenerationConfig probe;
    user_layers(probe);
    validate(probe);
  }

  std::optional<DistGroup> tp;
  if (args.has("tensor-parallel")) {
    if (prompt_cache_path)
      fail("cli", "--prompt-cache cannot be combined with --tensor-parallel (a saved cache holds every head)");
    tp = join_distributed_run("--tensor-parallel");
  }
  LoadedModel loaded = load(args.get("model").value_or("default"), load_options);
  // Under --tensor-parallel: every rank must have the same model, options and prompts; then each keeps
  // its share of the layers.
  std::unique_ptr<PeerWatch> watch;
  auto start_tp = [&](const std::string& inputs) {
    if (tp) watch = start_tensor_parallel(*tp, loaded, args, {"model", "prompts-file", "scores-out"}, inputs);
  };
  attach_hooks_from_flags(args, *loaded.model);
  GenerationConfig config;
  if (!loaded.generation_config_json.empty())
    for (auto& w : apply_generation_config_json(config, loaded.generation_config_json, ConfigSource::Model))
      std::cerr << w << "\n";
  user_layers(config);
  validate(config);
  if (args.has("show-config"))
    std::cerr << describe(with_model_defaults(config, loaded.model->config(), loaded.tokenizer.get()));
  warn_sampling_flags_unused(config, args, std::cerr);
  gen_options.negative_prompt_ids = negative_prompt(args, config, loaded.tokenizer.get());
  if (prompt_cache_path) {
    gen_options.prompt_cache =
        std::make_shared<const PromptCache>(load_prompt_cache(*prompt_cache_path, *loaded.model));
  }

  auto encode = [&](const std::string& text) {
    if (!loaded.tokenizer) fail("generate", "the model has no tokenizer; pass token ids instead of prompt text");
    return args.has("chat") ? chat_prompt_ids(*loaded.tokenizer, text, args.get("system"))
                            : loaded.tokenizer->encode(text);
  };
  if (batch) {
    auto requests = read_prompts_file(
        *args.get("prompts-file"), config, encode,
        [&](const std::vector<int>& ids, const GenerationConfig& c) { check_prompt(*loaded.model, ids, c); });
    std::vector<std::vector<int>> prompts;
    std::vector<GenerationConfig> configs;
    std::vector<std::string> lines;
    for (auto& r : requests) {
      prompts.push_back(std::move(r.prompt_ids));
      configs.push_back(std::move(r.config));
      lines.push_back(std::move(r.where));
    }
    std::string inputs;
    for (size_t i = 0; i < prompts.size(); ++i)
      inputs += ids_text(prompts[i]) + " " + resolved_settings(configs[i], loaded) + "\n";
    start_tp(inputs);
    BatchGenerateOptions batch_options;
    batch_options.batch_size = batch_size;
    batch_options.options = gen_options;
    batch_options.request_name = [&lines](int request) { return lines.at(request); };
    batch_options.on_alone = [](int request, const std::string& why) {
      std::fprintf(stderr, "[generate] request %d runs alone: %s\n", request + 1, why.c_str());
    };
    const auto t0 = std::chrono::steady_clock::now();
    auto results = generate_batch(*loaded.model, loaded.tokenizer, prompts, configs, batch_options);
    watch.reset();  // the other ranks may exit now
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (size_t i = 0; i < results.size(); ++i) {
      if (args.has("json")) {
        std::cout << result_json(results[i], configs[i]) << "\n";
        continue;
      }
      std::cout << "=== request " << i + 1 << "/" << results.size() << " ===\n";
      for (auto& seq : results[i].sequences) std::cout << seq.text << "\n";
    }
    std::cout.flush();
    int generated = 0;
    for (auto& r : results) generated += r.stats.generated_tokens;
    std::fprintf(
        stderr,
        "[stats] %zu requests, generated %d tokens in %.2f s (%.1f tok/s over all requests, prefill included)\n",
        results.size(), generated, secs, secs > 0 ? generated / secs : 0.0);
    return 0;
  }
  std::vector<int> prompt_ids = input_ids ? *input_ids : encode(*args.get("prompt"));
  start_tp(ids_text(prompt_ids) + " " + resolved_settings(config, loaded));

  const bool as_json = args.has("json");
  const bool several = config.num_return_sequences > 1;
  // Beam search is not streamed (the best hypothesis is only known at the end): printed when done.
  const bool beams = config.num_beams > 1;
  TokenCallback stream;
  if (!as_json && !several && !beams) stream = [](int, const std::string& text) { stream_text(text); };
  GenerationResult result = generate(*loaded.model, loaded.tokenizer, prompt_ids, config, stream, gen_options);
  watch.reset();  // the other ranks may exit now
  if (scores_out && is_output_rank()) save_scores(*scores_out, result);
  if (as_json) {
    // Replace (not throw on) invalid UTF-8: a generation cut at max length may end mid-character.
    std::cout << result_json(result, config) << "\n";
  } else {
    if (beams && !several) {
      std::cout << result.sequences.at(0).text;
    } else if (several) {  // not streamed: the sequences are decoded side by side
      for (size_t i = 0; i < result.sequences.size(); ++i)
        std::cout << "=== sequence " << i + 1 << "/" << result.sequences.size() << " ("
                  << to_string(result.sequences[i].finish_reason) << ") ===\n"
                  << result.sequences[i].text << (i + 1 < result.sequences.size() ? "\n" : "");
    }
    std::cout << "\n";
    std::cout.flush();
    print_stats(result);
  }
  return 0;
}

}  // namespace mlxgp::cli
