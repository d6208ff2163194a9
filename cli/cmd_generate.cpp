// `mlxgp generate`: load a model, build the generation config from its layers (the model's
// generation_config.json < --config file < flags), generate, and stream text or print one JSON object.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "files.h"
#include "mlxgp/chat_template.h"
#include "mlxgp/error.h"
#include "mlxgp/generate.h"
#include "mlxgp/generation_config.h"
#include "mlxgp/loader.h"

namespace mlxgp::cli {

namespace {

std::string flag_name(std::string field) {
  for (char& c : field)
    if (c == '_') c = '-';
  return field;
}

// The user's layers (--config file, then flags) applied onto `config`.
void apply_user_layers(GenerationConfig& config, const Args& args) {
  if (auto path = args.get("config"))
    apply_generation_config_json(config, read_file(*path, "config", "--config file"), ConfigSource::User);
  for (auto& f : generation_config_fields())
    if (auto v = args.get(flag_name(f.name))) set_generation_config_field(config, f.name, *v);
  // --temperature T > 0 means sampling, T == 0 greedy (mlx-lm / llama.cpp convention).
  if (auto t = args.get_double("temperature")) {
    if (*t == 0.0) {
      if (args.has("do-sample")) fail("config", "--temperature 0 means greedy and cannot be combined with --do-sample");
      config.do_sample = false;
      config.temperature = 1.0;
    } else if (*t > 0.0) {
      config.do_sample = true;
    }
  }
  if (args.has("ignore-eos")) config.eos_token_id = std::vector<int>{};
}

void print_stats(const GenerationResult& r) {
  const auto& s = r.stats;
  std::fprintf(stderr,
               "[stats] prompt %d tokens (%.1f tok/s prefill), generated %d tokens (%.1f tok/s decode), "
               "peak memory %.1f MiB, finish_reason %s\n",
               s.prompt_tokens, s.prefill_tokens_per_s, s.generated_tokens, s.decode_tokens_per_s,
               s.peak_memory_bytes / (1024.0 * 1024.0), to_string(r.sequences.at(0).finish_reason).c_str());
}

nlohmann::ordered_json result_json(const GenerationResult& r) {
  nlohmann::ordered_json seqs = nlohmann::ordered_json::array();
  for (auto& s : r.sequences)
    seqs.push_back({{"token_ids", s.token_ids}, {"text", s.text}, {"finish_reason", to_string(s.finish_reason)}});
  const auto& st = r.stats;
  return {{"prompt_token_ids", r.prompt_token_ids},
          {"sequences", seqs},
          {"stats",
           {{"prompt_tokens", st.prompt_tokens},
            {"generated_tokens", st.generated_tokens},
            {"prefill_tokens_per_s", st.prefill_tokens_per_s},
            {"decode_tokens_per_s", st.decode_tokens_per_s},
            {"peak_memory_bytes", st.peak_memory_bytes}}}};
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
  SpecialTokens special;
  if (auto id = tokenizer.bos_token_id()) special.bos_token = tokenizer.id_to_token(*id);
  if (auto id = tokenizer.eos_token_id()) special.eos_token = tokenizer.id_to_token(*id);
  std::string text = apply_chat_template(tokenizer.chat_template(), messages, true, special);
  return tokenizer.encode(text, /*add_special_tokens=*/false);
}

int run_generate(const std::vector<std::string>& argv) {
  Args args("generate",
            "Generate text from a prompt or token ids. Settings come from the model's generation_config.json,\n"
            "then --config, then the flags below (HF GenerationConfig names, '_' written '-').");
  args.option("model", "default | model folder | file.gguf (default: default)")
      .option("prompt", "prompt text (encoded with the model's tokenizer, special tokens added as HF does)")
      .option("input-ids", "comma-separated prompt token ids, e.g. 1,2,3 (instead of --prompt)")
      .option("chat", "wrap --prompt in the model's chat template as one user turn (add_generation_prompt)", false)
      .option("system", "with --chat: a system message before the user turn")
      .option("config", "generation config JSON file (HF generation_config.json field names)");
  for (auto& f : generation_config_fields()) {
    std::string help = f.help + (f.default_text.empty() ? "" : " [default " + f.default_text + "]");
    if (f.name == "temperature") help += "; on the command line T > 0 also turns on do_sample and T == 0 means greedy";
    args.option(flag_name(f.name), help, !f.is_flag);
  }
  args.option("ignore-eos", "never stop at EOS (generate exactly max_new_tokens)", false)
      .option("dtype", "float32 | bfloat16 | float16: compute dtype, dequantizing quantized weights "
                       "(default: the checkpoint's own)")
      .option("prefill-chunk-size", "prefill long prompts in chunks of this many tokens (default 512)")
      .option("show-config", "print the effective generation config (all layers merged) to stderr", false)
      .option("json", "print one JSON object (prompt_token_ids, sequences, stats) instead of streaming text", false);
  if (!args.parse(argv)) return 0;

  if (args.has("prompt") == args.has("input-ids")) fail("cli", "pass exactly one of --prompt and --input-ids");
  if (args.has("system") && !args.has("chat")) fail("cli", "--system needs --chat");
  if (args.has("chat") && !args.has("prompt")) fail("cli", "--chat needs --prompt");
  auto input_ids = args.get_int_list("input-ids");
  GeneratorOptions gen_options;
  if (auto n = args.get_int("prefill-chunk-size")) {
    if (*n < 1 || *n > INT32_MAX) fail("cli", "--prefill-chunk-size must be between 1 and 2^31-1");
    gen_options.prefill_chunk_size = static_cast<int>(*n);
  }
  LoadOptions load_options;
  if (auto d = args.get("dtype")) load_options.dtype = parse_dtype(*d);
  {
    // Check the user's settings before spending time on loading the model.
    GenerationConfig probe;
    apply_user_layers(probe, args);
    validate(probe);
  }

  LoadedModel loaded = load(args.get("model").value_or("default"), load_options);
  GenerationConfig config;
  if (!loaded.generation_config_json.empty())
    for (auto& w : apply_generation_config_json(config, loaded.generation_config_json, ConfigSource::Model))
      std::cerr << w << "\n";
  apply_user_layers(config, args);
  validate(config);
  if (args.has("show-config"))
    std::cerr << describe(with_model_defaults(config, loaded.model->config(), loaded.tokenizer.get()));
  if (!config.do_sample && (args.has("top-k") || args.has("top-p") || args.has("min-p") || args.has("typical-p") ||
                            args.has("epsilon-cutoff") || args.has("eta-cutoff")))
    std::cerr << "[config] warning: top_k/top_p/min_p/typical_p/epsilon_cutoff/eta_cutoff only apply when sampling "
                 "(--do-sample or --temperature > 0); generating greedily\n";

  std::vector<int> prompt_ids;
  if (input_ids) {
    prompt_ids = *input_ids;
  } else {
    if (!loaded.tokenizer) fail("generate", "the model has no tokenizer; pass --input-ids instead of --prompt");
    prompt_ids = args.has("chat") ? chat_prompt_ids(*loaded.tokenizer, *args.get("prompt"), args.get("system"))
                                  : loaded.tokenizer->encode(*args.get("prompt"));
  }

  const bool as_json = args.has("json");
  TokenCallback stream;
  if (!as_json)
    stream = [](int, const std::string& text) {
      if (text.empty()) return;
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    };
  GenerationResult result = generate(*loaded.model, loaded.tokenizer, prompt_ids, config, stream, gen_options);
  if (as_json) {
    // Replace (not throw on) invalid UTF-8: a generation cut at max length may end mid-character.
    std::cout << result_json(result).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  } else {
    std::cout << "\n";
    std::cout.flush();
    print_stats(result);
  }
  return 0;
}

}  // namespace mlxgp::cli
