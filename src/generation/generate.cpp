// generate(): the one-call loop over Generator, with streaming text and run statistics.
#include "mlxgp/generate.h"

#include <mlx/memory.h>

namespace mlxgp {

GenerationResult generate(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                          const std::vector<int>& prompt_ids, const GenerationConfig& config,
                          const TokenCallback& callback, GeneratorOptions options) {
  Generator gen(model, with_model_defaults(config, model.config(), tokenizer.get()), options);
  mx::reset_peak_memory();
  gen.prefill(prompt_ids);

  std::optional<StreamingDetokenizer> detok;
  if (tokenizer) detok.emplace(tokenizer);
  std::string text;
  while (!gen.done()) {
    int token = gen.step();
    std::string piece;
    // A terminating special EOS token (e.g. <|im_end|>) is kept in token_ids but not shown as text,
    // as mlx-lm prints it; an ordinary token chosen as EOS keeps its text.
    bool hidden = tokenizer && gen.finish_reason() == FinishReason::Eos && tokenizer->is_special(token);
    if (detok && !hidden) piece = detok->push(token);
    if (detok && gen.done()) piece += detok->flush();
    text += piece;
    if (callback) callback(token, piece);
  }

  GenerationResult result;
  result.prompt_token_ids = prompt_ids;
  result.sequences.push_back({gen.generated(), text, gen.finish_reason()});
  auto& s = result.stats;
  s.prompt_tokens = static_cast<int>(prompt_ids.size());
  s.generated_tokens = static_cast<int>(gen.generated().size());
  if (gen.prefill_seconds() > 0) s.prefill_tokens_per_s = s.prompt_tokens / gen.prefill_seconds();
  if (s.generated_tokens > 1 && gen.decode_seconds() > 0)
    s.decode_tokens_per_s = (s.generated_tokens - 1) / gen.decode_seconds();
  s.peak_memory_bytes = mx::get_peak_memory();
  return result;
}

}  // namespace mlxgp
