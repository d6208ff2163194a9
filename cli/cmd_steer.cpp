// `mlxgp steer extract`: a steering vector by contrastive activation addition — the mean residual
// activation after a layer over positive prompts minus the same over negative prompts.
#include <fstream>
#include <iostream>
#include <sstream>

#include <mlx/mlx.h>

#include "args.h"
#include "commands.h"
#include "mlxgp/chat_template.h"
#include "files.h"
#include "mlxgp/error.h"
#include "mlxgp/paths.h"
#include "mlxgp/loader.h"
#include "mlxgp/safetensors_io.h"
#include "mlxgp/steering.h"

namespace mx = mlx::core;

namespace mlxgp::cli {

namespace {

std::vector<std::string> read_lines(const std::string& path, const std::string& flag) {
  reject_directory(path, "steer", flag + " file");
  std::ifstream in(path);
  if (!in) fail("steer", "cannot read " + flag + " file '" + path + "'");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) lines.push_back(line);
  }
  if (lines.empty()) fail("steer", flag + " file '" + path + "' has no prompts (one per line)");
  return lines;
}

std::vector<int> parse_ids(const std::string& line, const std::string& set) {
  std::vector<int> ids;
  std::stringstream ss(line);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      ids.push_back(std::stoi(item, &used));
      if (item.find_first_not_of(" \t", used) != std::string::npos) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      fail("steer", "--" + set + "-ids: '" + item + "' is not a token id");
    }
  }
  return ids;
}

int run_extract(const std::vector<std::string>& argv) {
  Args args("steer extract", "steering vector = mean activation(positive) - mean activation(negative) at a layer");
  args.option("model", "model folder, .gguf file or 'default' (default: default)")
      .option("positive", "text file, one prompt per line")
      .option("negative", "text file, one prompt per line")
      .option("positive-ids", "instead of --positive: one comma-separated token id list per line")
      .option("negative-ids", "instead of --negative: one comma-separated token id list per line")
      .option("layer",
              "block index (0-based) whose output is read (a forward hook on HF model.layers[layer]; "
              "hidden_states[layer + 1] except the last layer, which transformers reports after the final norm)")
      .option("position", "last | mean: the prompt's last position or the mean over positions (default: last)")
      .option("chat", "wrap each prompt in the model's chat template as a user message", false)
      .option("dtype", "float32 | bfloat16 | float16 (default: the checkpoint's own)")
      .option("out", "output .safetensors file (key steering_vector)");
  if (!args.parse(argv)) return 0;
  const auto out = args.require("out");
  check_output_file(out, "--out");
  for (const char* set : {"positive", "negative"}) {
    const bool text = args.has(set), ids = args.has(std::string(set) + "-ids");
    if (text == ids) fail("cli", std::string("give exactly one of --") + set + " and --" + set + "-ids");
  }
  const auto layer = args.get_int("layer");
  if (!layer) args.require("layer");
  const auto position = args.get("position").value_or("last");
  const auto reduce = parse_capture_reduce(position);
  if (reduce == ActivationCaptureHook::Reduce::All) fail("steer", "--position must be last or mean");
  LoadOptions opts;
  if (auto d = args.get("dtype")) opts.dtype = parse_dtype(*d);
  auto loaded = load(args.get("model").value_or("default"), opts);
  auto& model = *loaded.model;
  auto encode_all = [&](const std::vector<std::string>& lines, const std::string& where) {
    std::vector<std::vector<int>> ids;
    if (!loaded.tokenizer) fail("steer", "the model has no tokenizer: give prompts as token ids (--positive-ids)");
    for (size_t i = 0; i < lines.size(); ++i) {
      const std::string& line = lines[i];
      try {
        if (args.has("chat")) {
          const auto& tok = *loaded.tokenizer;
          if (tok.chat_template().empty()) fail("steer", "--chat: the model's tokenizer has no chat template");
          auto text = apply_chat_template(tok.chat_template(), {ChatMessage{"user", line}}, true, tok.special_tokens());
          ids.push_back(tok.encode(text, /*add_special_tokens=*/false));
        } else {
          ids.push_back(loaded.tokenizer->encode(line));
        }
      } catch (const Error& e) {  // which line of which file (invalid UTF-8, say)
        throw Error("steer", where + " line " + std::to_string(i + 1) + ": " + without_component(e.what()), e.kind());
      }
    }
    return ids;
  };
  auto prompts = [&](const std::string& set) {
    if (auto path = args.get(set))
      return encode_all(read_lines(*path, "--" + set), "--" + set + " file '" + *path + "'");
    std::vector<std::vector<int>> ids;
    for (auto& line : read_lines(*args.get(set + "-ids"), "--" + set + "-ids")) ids.push_back(parse_ids(line, set));
    return ids;
  };
  auto positive = prompts("positive");
  auto negative = prompts("negative");
  auto v = extract_steering_vector(model, positive, negative, static_cast<int>(*layer), reduce);
  mlxgp::save_safetensors_atomic(out, {{"steering_vector", v}},
                                 {{"format", "mlxgp-steering-vector"},
                                  {"layer", std::to_string(*layer)},
                                  {"position", position},
                                  {"model", loaded.source},
                                  {"n_positive", std::to_string(positive.size())},
                                  {"n_negative", std::to_string(negative.size())}},
                                 "steer");
  auto norm = mx::sqrt(mx::sum(mx::square(v))).item<float>();
  std::fprintf(stderr, "[steer] layer %lld, %zu positive / %zu negative prompts, |v| = %.4f -> %s\n",
               static_cast<long long>(*layer), positive.size(), negative.size(), norm, out.c_str());
  return 0;
}

}  // namespace

int run_steer(const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0] == "--help" || argv[0] == "-h") {
    std::cout << "usage: mlxgp steer extract --positive pos.txt --negative neg.txt --layer L [--position last|mean] "
                 "--out v.safetensors\n";
    return argv.empty() ? 2 : 0;
  }
  if (argv[0] == "extract") return run_extract({argv.begin() + 1, argv.end()});
  fail("cli", "unknown steer subcommand '" + argv[0] + "' (expected: extract)");
}

}  // namespace mlxgp::cli
