// `mlxgp process-logits` (hidden, for parity tests): runs the logits-processor pipeline of a
// generation config on given scores [B, V] and ids [B, T], as transformers' LogitsProcessorList
// would be called by generate() at that step, and writes the processed scores.
// Batch mode: when --config holds a JSON array, case i uses config i, ids entry i and the
// safetensors key "scores_<i>" (in and out), so one process serves many cases.
// The ids after --prompt-len are replayed as generated tokens (on_token), so processors that count
// generated tokens (presence/frequency penalty, force_words_ids) see the state generate() would have.
// --model gives processors that need one (guidance_scale) a model, and its tokenizer (DRY's sequence
// breakers); --negative-prompt-ids is CFG's unconditional prompt. --prefix-allowed gives a
// table-driven prefix_allowed_tokens_fn (the tests write the same function in Python for
// transformers' PrefixConstrainedLogitsProcessor).
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "files.h"
#include "mlxgp/error.h"
#include "mlxgp/generation_config.h"
#include "mlxgp/loader.h"
#include "mlxgp/logits_processor.h"

namespace mlxgp::cli {

namespace mx = mlx::core;
using nlohmann::json;

namespace {

json parse_json(const std::string& text, const char* what) {
  try {
    return json::parse(text);
  } catch (const json::exception&) {
    fail("cli", std::string("malformed JSON in ") + what);
  }
}

// [[...], ...] -> int32 [B, T]; rows must have one length, ids must be >= 0.
mx::array ids_array(const json& j) {
  if (!j.is_array() || j.empty() || !j[0].is_array() || j[0].empty())
    fail("cli", "input ids must be a non-empty list of non-empty lists of token ids");
  const size_t t = j[0].size();
  std::vector<int> flat;
  for (auto& row : j) {
    if (!row.is_array() || row.size() != t) fail("cli", "input id rows must all have the same length");
    for (auto& v : row) {
      if (!v.is_number_integer() || v.get<long long>() < 0 || v.get<long long>() > INT32_MAX)
        fail("cli", "input ids must be non-negative integers");
      flat.push_back(v.get<int>());
    }
  }
  return mx::array(flat.data(), {static_cast<int>(j.size()), static_cast<int>(t)}, mx::int32);
}

mx::array run_case(const json& config_json, const mx::array& scores_in, const json& ids_json,
                   std::optional<long long> prompt_len, const ProcessorContext& context) {
  GenerationConfig config;
  apply_generation_config_json(config, config_json.dump(), ConfigSource::User);
  validate(config);
  mx::array ids = ids_array(ids_json);
  if (scores_in.ndim() != 2) fail("cli", "scores must be a 2-D [batch, vocab] array");
  // (A model's vocabulary is never empty; the processors index into it.)
  if (scores_in.shape(0) < 1 || scores_in.shape(1) < 1) fail("cli", "scores need at least one row and one column");
  if (scores_in.shape(0) != ids.shape(0)) fail("cli", "scores and input ids have different batch sizes");
  const int t = ids.shape(1);
  const long long p = prompt_len.value_or(t);
  if (p < 1 || p > t) fail("cli", "--prompt-len must be between 1 and the number of ids per row");
  auto list = build_logits_processors(config, context);
  const int b = ids.shape(0);
  list.on_prompt(mx::slice(ids, {0, 0}, {b, static_cast<int>(p)}));
  for (int j = static_cast<int>(p); j < t; ++j) list.on_token(mx::reshape(mx::slice(ids, {0, j}, {b, j + 1}), {b}));
  return list.apply(mx::astype(scores_in, mx::float32), ids);
}

// {"default": [ids], "rules": [[batch_id, last_token, [ids]], ...]}: the first rule matching the
// row's batch id and last token gives the allowed tokens, else "default".
PrefixAllowedTokensFn prefix_table(const json& j) {
  const char* shape = "--prefix-allowed must be {\"default\": [ids], \"rules\": [[batch_id, last_token, [ids]], ...]}";
  if (!j.is_object() || !j.contains("default") || !j["default"].is_array()) fail("cli", shape);
  struct Rule {
    int batch, last;
    std::vector<int> allowed;
  };
  std::vector<Rule> rules;
  // Integers in [0, 2^31) only: get<int>() of 1e30 is undefined behaviour, of 2^32 + 1 wraps to 1 (an
  // unsigned past 2^63 reads as negative here, and is refused with them).
  auto id = [&](const json& v) {
    if (!v.is_number_integer() || v.get<long long>() < 0 || v.get<long long>() > INT32_MAX) fail("cli", shape);
    return static_cast<int>(v.get<long long>());
  };
  auto id_list = [&](const json& v) {
    if (!v.is_array()) fail("cli", shape);
    std::vector<int> out;
    for (auto& e : v) out.push_back(id(e));
    return out;
  };
  try {
    for (auto& r : j.value("rules", json::array())) rules.push_back({id(r.at(0)), id(r.at(1)), id_list(r.at(2))});
    auto fallback = id_list(j["default"]);
    return [rules, fallback](int batch_id, const std::vector<int>& ids) {
      for (auto& r : rules)
        if (r.batch == batch_id && !ids.empty() && ids.back() == r.last) return r.allowed;
      return fallback;
    };
  } catch (const json::exception&) {
    fail("cli", shape);
  }
}

}  // namespace

int run_process_logits(const std::vector<std::string>& argv) {
  Args args("process-logits", "run a generation config's logits processors on scores [B, V] (parity checks)");
  args.option("config", "generation config JSON file (an object, or an array of objects for batch mode)")
      .option("scores", "input .safetensors with key 'scores' [B, V] float32 (batch mode: 'scores_<i>')")
      .option("input-ids-file", "JSON file: [[ids...], ...] one row per batch entry (batch mode: a list of those)")
      .option("prompt-len", "how many leading ids are the prompt (default: all; batch mode: a comma list)")
      .option("out", "output .safetensors file (same keys as --scores)")
      .option("model", "model for processors that run one (guidance_scale), e.g. a folder or .gguf")
      .option("dtype", "the model's dtype: float32 | bfloat16 | float16 (default: the checkpoint's own)")
      .option("negative-prompt-ids", "comma-separated unconditional prompt ids for guidance_scale")
      .option("prefix-allowed", "JSON file: a prefix_allowed_tokens_fn as a table (see the source)");
  if (!args.parse(argv)) return 0;
  ProcessorContext context;
  LoadedModel loaded;
  if (auto m = args.get("model")) {
    LoadOptions opts;
    if (auto d = args.get("dtype")) opts.dtype = parse_dtype(*d);
    loaded = load(*m, opts);
    context.model = loaded.model.get();
    context.tokenizer = loaded.tokenizer;  // DRY's sequence breakers are matched against its token texts
  }
  if (auto neg = args.get_int_list("negative-prompt-ids")) {
    if (neg->empty()) fail("cli", "--negative-prompt-ids is empty");
    context.negative_prompt_ids = std::vector<int>(neg->begin(), neg->end());
  }
  if (auto f = args.get("prefix-allowed"))
    context.prefix_allowed_tokens_fn =
        prefix_table(parse_json(read_file(*f, "cli", "--prefix-allowed"), "--prefix-allowed"));
  json config = parse_json(read_file(args.require("config"), "cli", "--config"), "--config");
  json ids = parse_json(read_file(args.require("input-ids-file"), "cli", "--input-ids-file"), "--input-ids-file");
  const std::string out = args.require("out");
  std::unordered_map<std::string, mx::array> inputs;
  try {
    inputs = mx::load_safetensors(args.require("scores")).first;
  } catch (const std::exception& e) {
    fail("cli", "cannot read --scores: " + std::string(e.what()));
  }
  auto get = [&](const std::string& key) {
    auto it = inputs.find(key);
    if (it == inputs.end()) fail("cli", "--scores has no key '" + key + "'");
    return it->second;
  };

  std::unordered_map<std::string, mx::array> results;
  if (config.is_array()) {
    auto lens = args.get_int_list("prompt-len");
    if (!ids.is_array() || ids.size() != config.size()) fail("cli", "batch mode needs one ids entry per config");
    if (lens && lens->size() != config.size()) fail("cli", "batch mode needs one --prompt-len per config");
    for (size_t i = 0; i < config.size(); ++i) {
      std::string key = "scores_" + std::to_string(i);
      results.insert_or_assign(key, run_case(config[i], get(key), ids[i],
                                             lens ? std::optional<long long>((*lens)[i]) : std::nullopt, context));
    }
  } else {
    results.insert_or_assign("scores", run_case(config, get("scores"), ids, args.get_int("prompt-len"), context));
  }
  for (auto& [k, v] : results) mx::eval(v);
  save_safetensors_atomic(out, results);
  return 0;
}

}  // namespace mlxgp::cli
