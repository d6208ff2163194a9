// generate(): the one-call loop over Generator, with streaming text, per-sequence outputs and run
// statistics.
#include "mlxgp/generate.h"

#include <mlx/memory.h>
#include <mlx/mlx.h>

#include "generation/core/decode_group.h"
#include "generation/core/setup.h"
#include "mlxgp/beam_search.h"
#include "mlxgp/decode_rows.h"
#include "mlxgp/speculative.h"

namespace mx = mlx::core;

namespace mlxgp {

GenerationResult generate(Model& model, std::shared_ptr<const Tokenizer> tokenizer, const std::vector<int>& prompt_ids,
                          const GenerationConfig& config_in, const TokenCallback& callback, GeneratorOptions options) {
  std::vector<GenerationConfig> agreed{config_in};
  agree_missing_seeds(model, agreed);
  const GenerationConfig& config = agreed[0];
  // Beams / sequences that cannot fit are refused here in one line, not by MLX mid-generation.
  check_decode_rows_fit(model, decode_rows(config),
                        static_cast<long long>(prompt_ids.size()) + check_prompt(model, prompt_ids, config),
                        config.num_beams > 1 ? "beams" : "sequences");
  if (config.num_beams > 1) return beam_search(model, tokenizer, prompt_ids, config, std::move(options));
  if (config.use_speculative || config.prompt_lookup_num_tokens)
    return speculative_generate(model, tokenizer, prompt_ids, config, callback, std::move(options));
  auto prepared = prepare_generation(model, tokenizer, config, std::move(options));
  Generator gen(model, std::move(prepared.config), std::move(prepared.options));
  mx::reset_peak_memory();
  gen.prefill(prompt_ids);

  const int n = gen.num_sequences();
  TextStreams texts(tokenizer, n);
  while (!gen.done()) {
    const std::vector<int>& tokens = gen.step_batch();
    for (int r = 0; r < n; ++r) {
      if (tokens[r] < 0) continue;  // this row finished earlier
      std::string piece = texts.push(r, tokens[r], gen.finish_reason(r));
      if (callback && r == 0) callback(tokens[r], piece);
    }
  }
  GenerationResult result = assemble_result(gen.group(), texts);
  result.stats.memory_trace = gen.memory_trace();
  return result;
}

}  // namespace mlxgp
