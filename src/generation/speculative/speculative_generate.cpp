// speculative_generate(): one speculative (draft model or self-speculation) or prompt-lookup
// generation, run to the end (speculative_run.h).
#include "mlxgp/speculative.h"

#include <mlx/memory.h>

#include "generation/core/decode_group.h"
#include "generation/core/setup.h"
#include "generation/speculative/speculative_run.h"

namespace mx = mlx::core;

namespace mlxgp {

GenerationResult speculative_generate(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                      const std::vector<int>& prompt_ids, const GenerationConfig& config_in,
                                      const TokenCallback& callback, GeneratorOptions options,
                                      std::shared_ptr<Model> draft) {
  std::vector<GenerationConfig> agreed{config_in};  // generate() agreed already; direct callers have not
  agree_missing_seeds(model, agreed);
  auto prepared = prepare_generation(model, tokenizer, agreed[0], std::move(options));
  const GenerationConfig& config = prepared.config;
  options = std::move(prepared.options);
  draft = speculative::resolve_draft(model, config, options, std::move(draft));
  mx::reset_peak_memory();
  speculative::SpeculativeRun run(model, draft, config, options);
  TextStreams texts(tokenizer, 1);
  run.start(prompt_ids);
  while (!run.next_round([&](int token) {
    std::string piece = texts.push(0, token, run.finish_reason());
    if (callback) callback(token, piece);
  })) {
  }
  return speculative::result_of(run, prompt_ids, texts);
}

}  // namespace mlxgp
