// generate_batch(): a list of prompts through one BatchEngine; what cannot share a batch runs alone.
#include <algorithm>

#include <mlx/memory.h>

#include "generation/core/setup.h"
#include "mlxgp/decode_rows.h"
#include "mlxgp/batch_engine.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

std::vector<GenerationResult> generate_batch(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                             const std::vector<std::vector<int>>& prompts,
                                             const std::vector<GenerationConfig>& configs_in,
                                             BatchGenerateOptions options) {
  if (configs_in.size() != 1 && configs_in.size() != prompts.size())
    fail("generate", "give one generation config, or one per prompt (" + std::to_string(prompts.size()) + " prompts, " +
                         std::to_string(configs_in.size()) + " configs)");
  // A sharded model's ranks agree on a seed per prompt (one shared config would give every prompt the same
  // random stream).
  std::vector<GenerationConfig> agreed;
  if (model.tensor_parallel_group()) {
    for (size_t i = 0; i < prompts.size(); ++i)
      agreed.push_back(configs_in.size() == 1 ? configs_in[0] : configs_in[i]);
    agree_missing_seeds(model, agreed);
  }
  const auto& configs = agreed.empty() ? configs_in : agreed;
  auto config_of = [&](size_t i) -> const GenerationConfig& { return configs.size() == 1 ? configs[0] : configs[i]; };
  // The rows decoded at once (the batch size, or a wider request, which runs alone), each as long as the
  // longest: refused in one line if they cannot fit, before any work.
  long long rows = 1, length = 1, all_rows = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    rows = std::max(rows, decode_rows(config_of(i)));
    all_rows += decode_rows(config_of(i));
    length =
        std::max(length, static_cast<long long>(prompts[i].size()) + check_prompt(model, prompts[i], config_of(i)));
  }
  check_decode_rows_fit(model, std::max(rows, std::min<long long>(options.batch_size, all_rows)), length,
                        "rows (the batch size, or the widest request's beams or sequences)");
  std::vector<std::optional<GenerationResult>> results(prompts.size());
  // No more rows than the prompts have (the batch caches reserve room for max_batch_rows); a batch size
  // under 1 goes to the engine, which refuses it in one line.
  int batch_rows = options.batch_size;
  if (batch_rows >= 1) batch_rows = static_cast<int>(std::clamp<long long>(all_rows, 1, batch_rows));
  BatchEngine engine(model, tokenizer, {batch_rows});
  std::vector<std::pair<int, size_t>> ids;  // engine id -> input index
  std::vector<size_t> alone;
  // Every request is validated before any runs, so a bad one fails the call before work is spent; its
  // error names it.
  auto named = [&](size_t i, const Error& e) {
    const std::string name =
        options.request_name ? options.request_name(static_cast<int>(i)) : "request " + std::to_string(i + 1);
    return Error("generate", name + ": " + without_component(e.what()), e.kind());
  };
  for (size_t i = 0; i < prompts.size(); ++i) {
    try {
      auto prepared = prepare_generation(model, tokenizer, config_of(i), options.options);  // throws [config]
      const int n = static_cast<int>(prompts[i].size());
      // Beam searches and speculative runs have the engine's lanes; what cannot share a batch runs alone.
      if (auto why = batch_refusal(prepared.config, prepared.options, n); !why.empty()) {
        check_prompt(model, prompts[i], prepared.config);
        if (options.on_alone) options.on_alone(static_cast<int>(i), why);
        alone.push_back(i);
        continue;
      }
      BatchRequest req{prompts[i], config_of(i), options.options, {}};
      if (options.on_token) {
        const int index = static_cast<int>(i);
        req.on_token = [&options, index](int row, int token, const std::string& text) {
          options.on_token(index, row, token, text);
        };
      }
      ids.emplace_back(engine.submit(std::move(req)), i);
    } catch (const Error& e) {
      throw named(i, e);
    }
  }
  mx::reset_peak_memory();
  while (engine.busy())
    for (int id : engine.step())
      for (auto& [eid, index] : ids)
        if (eid == id) {
          results[index] = engine.take_result(id);
          if (results[index] && results[index]->error) throw named(index, *results[index]->error);
        }
  for (size_t i : alone) {
    TokenCallback cb;
    if (options.on_token) {
      const int index = static_cast<int>(i);
      cb = [&options, index](int token, const std::string& text) { options.on_token(index, 0, token, text); };
    }
    results[i] = generate(model, tokenizer, prompts[i], config_of(i), cb, options.options);
  }
  std::vector<GenerationResult> out;
  for (auto& r : results) out.push_back(std::move(*r));
  return out;
}

}  // namespace mlxgp
