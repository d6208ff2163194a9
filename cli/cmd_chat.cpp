// `mlxgp chat`: an interactive multi-turn chat on stdin/stdout through ChatSession. Each line of
// stdin is one user message; the reply streams to stdout followed by a newline, and a stats line per
// turn goes to stderr. `/reset` starts over, `/exit` (or end of input) quits. Works on piped stdin.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "stream_out.h"
#include "args.h"
#include "load_flags.h"
#include "commands.h"
#include "gen_flags.h"
#include "mlxgp/chat_session.h"
#include "mlxgp/error.h"
#include "mlxgp/loader.h"

namespace mlxgp::cli {

namespace {

// Without max_new_tokens HF counts max_length (default 20) over the whole conversation, which would
// end every chat at once; like mlx-lm's chat (max_tokens 256), replies default to 256 new tokens.
constexpr int kDefaultChatMaxNewTokens = 256;

void print_turn_stats(int turn, const ChatReply& r) {
  const auto& s = r.stats;
  std::fprintf(stderr,
               "[chat] turn %d: prompt %d tokens (%d reused, %d prefilled, %.1f tok/s prefill), generated %d tokens "
               "(%.1f tok/s decode), finish_reason %s%s\n",
               turn, s.prompt_tokens, s.reused_tokens, s.prefilled_tokens, s.prefill_tokens_per_s, s.generated_tokens,
               s.decode_tokens_per_s, to_string(r.finish_reason).c_str(),
               s.dropped_turns ? (", dropped " + std::to_string(s.dropped_turns) + " old exchange(s)").c_str() : "");
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

int run_chat(const std::vector<std::string>& argv) {
  Args args("chat",
            "Chat with an instruct model: each stdin line is a user message, the reply streams to stdout.\n"
            "The conversation is rendered with the model's chat template every turn and the KV cache is kept,\n"
            "so only the new part is prefilled. Commands: /reset (start over), /exit (or end of input).\n"
            "Generation settings as in `mlxgp generate` (max_new_tokens defaults to 256 here). With --kv-bits,\n"
            "earlier turns are attended to as the kept cache holds them (quantized, as mlx-lm's kept prompt\n"
            "caches), where `generate` on the whole conversation prefills them at full precision first.");
  args.option("model", "default | model folder | file.gguf (default: default)")
      .option("system", "a system message at the start of the conversation (kept by /reset)")
      .option("drop-old-turns",
              "when the conversation outgrows the context, drop the oldest exchanges "
              "(default: report an error and keep the conversation)",
              false)
      .option("dtype",
              "float32 | bfloat16 | float16: compute dtype, dequantizing quantized weights "
              "(default: the checkpoint's own)")
      .option("prefill-chunk-size", "prefill long prompts in chunks of this many tokens (default 512)")
      .option("show-config", "print the effective generation config to stderr", false);
  add_generation_flags(args);
  declare_int8_flag(args);
  if (!args.parse(argv)) return 0;

  ChatSessionOptions options;
  options.system_prompt = args.get("system");
  if (args.has("drop-old-turns")) options.on_overflow = ContextOverflow::DropOldestTurns;
  if (auto n = args.get_int("prefill-chunk-size")) {
    if (*n < 1 || *n > INT32_MAX) fail("cli", "--prefill-chunk-size must be between 1 and 2^31-1");
    options.generator.prefill_chunk_size = static_cast<int>(*n);
  }
  LoadOptions load_options = load_options_from(args);
  GenerationConfig user_only;               // the user's layers alone: checked before loading, and tells whether
  apply_generation_flags(user_only, args);  // they set max_length themselves
  validate(user_only);
  const bool user_set_length = user_only.max_length != GenerationConfig().max_length;

  LoadedModel loaded = load(args.get("model").value_or("default"), load_options);
  GenerationConfig config = build_generation_config(loaded.generation_config_json, args, std::cerr);
  if (!config.max_new_tokens && !user_set_length) config.max_new_tokens = kDefaultChatMaxNewTokens;
  warn_sampling_flags_unused(config, args, std::cerr);
  ChatSession session(loaded.model, loaded.tokenizer, config, options);
  if (args.has("show-config"))
    std::cerr << describe(with_model_defaults(config, loaded.model->config(), loaded.tokenizer.get()));

  const bool interactive = isatty(STDIN_FILENO);
  auto stream = [](int, const std::string& text) { stream_text(text); };
  int turn = 0, status = 0;
  std::string line;
  while (true) {
    if (interactive) {
      std::fputs(">>> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      session.reset();
      turn = 0;
      std::fputs("[chat] conversation reset\n", stderr);
      continue;
    }
    if (line.empty()) continue;
    try {
      ChatReply reply = session.send(line, stream);
      std::fputs("\n", stdout);
      std::fflush(stdout);
      print_turn_stats(++turn, reply);
    } catch (const Error& e) {
      // A failed turn leaves the conversation as it was; the loop goes on, the exit code remembers it.
      std::fflush(stdout);
      std::cerr << one_line(e.what()) << "\n";
      status = e.kind() == ErrorKind::InvalidInput ? 2 : 1;
    }
  }
  return status;
}

}  // namespace mlxgp::cli
