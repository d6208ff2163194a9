// Generation flags shared by the generating subcommands (see gen_flags.h).
#include "gen_flags.h"

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

void warn_sampling_flags_unused(const GenerationConfig& config, const Args& args, std::ostream& warnings) {
  // transformers warns alike (GenerationConfig.validate) when num_beams is 1.
  if (config.num_beams <= 1)
    for (const char* f : {"length-penalty", "early-stopping"})
      if (args.has(f)) {
        warnings << "[config] warning: length_penalty / early_stopping only apply to beam search (num_beams > 1); "
                    "they change nothing here\n";
        break;
      }
  if (config.do_sample) return;
  for (const char* f : {"top-k", "top-p", "min-p", "typical-p", "epsilon-cutoff", "eta-cutoff"})
    if (args.has(f)) {
      warnings << "[config] warning: top_k/top_p/min_p/typical_p/epsilon_cutoff/eta_cutoff only apply when "
                  "sampling (--do-sample or --temperature > 0); generating greedily\n";
      return;
    }
}

}  // namespace mlxgp::cli
