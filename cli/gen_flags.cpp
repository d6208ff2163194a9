// Generation flags shared by the generating subcommands (see gen_flags.h).
#include "gen_flags.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ostream>

#include "files.h"
#include "mlxgp/error.h"

namespace mlxgp::cli {

std::string generation_flag_name(std::string field) {
  for (char& c : field)
    if (c == '_') c = '-';
  return field;
}

void add_generation_flags(Args& args) {
  args.option("config", "generation config JSON file (HF generation_config.json field names)");
  for (auto& f : generation_config_fields()) {
    std::string help = f.help + (f.default_text.empty() ? "" : " [default " + f.default_text + "]");
    if (f.name == "temperature") help += "; on the command line T > 0 also turns on do_sample and T == 0 means greedy";
    args.option(generation_flag_name(f.name), help, !f.is_flag);
  }
  args.option("ignore-eos", "never stop at EOS (generate exactly max_new_tokens)", false);
}

void apply_generation_flags(GenerationConfig& config, const Args& args) {
  if (auto path = args.get("config"))
    apply_generation_config_json(config, read_file(*path, "config", "--config file"), ConfigSource::User);
  for (auto& f : generation_config_fields()) {
    auto v = args.get(generation_flag_name(f.name));
    if (!v) continue;
    // A schema or a grammar is a document: the flag names its file.
    if (f.name == "json_schema" || f.name == "grammar") {
      auto text = read_file(*v, "config", "--" + generation_flag_name(f.name) + " file");
      if (f.name == "json_schema") config.json_schema = text;
      else config.grammar = text;
      continue;
    }
    set_generation_config_field(config, f.name, *v);
  }
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

GenerationConfig build_generation_config(const std::string& model_generation_config_json, const Args& args,
                                         std::ostream& warnings) {
  GenerationConfig config;
  if (!model_generation_config_json.empty())
    for (auto& w : apply_generation_config_json(config, model_generation_config_json, ConfigSource::Model))
      warnings << w << "\n";
  apply_generation_flags(config, args);
  validate(config);
  return config;
}

long long decode_rows(const GenerationConfig& config) {
  long long rows = config.num_beams > 1 ? config.num_beams : std::max(1, config.num_return_sequences);
  return config.guidance_scale && *config.guidance_scale != 1.0 ? 2 * rows : rows;
}

void check_decode_rows_fit(Model& model, long long rows, long long length, const std::string& what) {
  const auto& c = model.config();
  auto gib = [](double bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
    return std::string(buf);
  };
  const long long vocab = std::max(1, c.vocab_size);
  if (rows > INT32_MAX / vocab)
    fail("generate", std::to_string(rows) + " " + what + " x vocabulary " + std::to_string(vocab) +
                         " exceed MLX's 2^31-element array limit; use at most " + std::to_string(INT32_MAX / vocab));
  // Per row: the float32 logits and about seven working copies (log-softmax, processors, scores, top-k),
  // plus keys and values of every layer, allocated in steps of 256 positions (the KV caches' step), twice
  // (a beam reorder or a cache growth copies them), in the activation dtype. Measured: 2000 beams of the
  // default model (3 new tokens) reached 23 GiB before the kernel killed them.
  double act_bytes = 4;
  auto& params = model.parameters();
  if (auto it = params.find("model.norm.weight"); it != params.end()) act_bytes = static_cast<double>(it->second.itemsize());
  const double per_row = 8.0 * 4.0 * static_cast<double>(vocab) +
                         2.0 * static_cast<double>((std::max(1LL, length) + 255) / 256 * 256) * c.num_hidden_layers * 2.0 *
                             c.num_key_value_heads * c.head_dim * act_bytes;
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return;
  const double budget = 0.8 * static_cast<double>(pages) * static_cast<double>(page);
  if (per_row * static_cast<double>(rows) > budget)
    fail("generate", std::to_string(rows) + " " + what + " need about " + gib(per_row * static_cast<double>(rows)) +
                         " for logits and KV cache, more than 80% of this machine's " +
                         gib(static_cast<double>(pages) * static_cast<double>(page)) + "; use at most " +
                         std::to_string(static_cast<long long>(budget / per_row)));
}

void warn_sampling_flags_unused(const GenerationConfig& config, const Args& args, std::ostream& warnings) {
  if (config.do_sample) return;
  for (const char* f : {"top-k", "top-p", "min-p", "typical-p", "epsilon-cutoff", "eta-cutoff"})
    if (args.has(f)) {
      warnings << "[config] warning: top_k/top_p/min_p/typical_p/epsilon_cutoff/eta_cutoff only apply when "
                  "sampling (--do-sample or --temperature > 0); generating greedily\n";
      return;
    }
}

}  // namespace mlxgp::cli
