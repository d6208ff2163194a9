// generate(): the one-call loop over Generator, with streaming text, per-sequence outputs and run
// statistics.
#include "mlxgp/generate.h"

#include <mlx/memory.h>
#include <mlx/mlx.h>

#include "mlxgp/beam_search.h"
#include "mlxgp/speculative.h"

namespace mlxgp {

namespace {

std::vector<float> host_floats(const mx::array& a) {
  auto f = mx::contiguous(mx::astype(a, mx::float32));  // data() is read as one row-major block
  mx::eval(f);
  return {f.data<float>(), f.data<float>() + f.size()};
}

// Each generated token's entry in a [n, V] per-step array.
std::vector<float> chosen(const mx::array& steps, const std::vector<int>& tokens) {
  mx::array idx(tokens.data(), {static_cast<int>(tokens.size()), 1}, mx::int32);
  return host_floats(mx::take_along_axis(steps, idx, 1));
}

}  // namespace

GenerationResult generate(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                          const std::vector<int>& prompt_ids, const GenerationConfig& config,
                          const TokenCallback& callback, GeneratorOptions options) {
  if (config.num_beams > 1) return beam_search(model, tokenizer, prompt_ids, config, std::move(options));
  if (config.use_speculative || config.prompt_lookup_num_tokens)
    return speculative_generate(model, tokenizer, prompt_ids, config, callback, std::move(options));
  if (!options.tokenizer) options.tokenizer = tokenizer;
  Generator gen(model, with_model_defaults(config, model.config(), tokenizer.get()), std::move(options));
  mx::reset_peak_memory();
  gen.prefill(prompt_ids);

  const int n = gen.num_sequences();
  std::vector<std::optional<StreamingDetokenizer>> detok(n);
  if (tokenizer)
    for (auto& d : detok) d.emplace(tokenizer);
  std::vector<std::string> texts(n);
  while (!gen.done()) {
    const std::vector<int>& tokens = gen.step_batch();
    for (int r = 0; r < n; ++r) {
      const int token = tokens[r];
      if (token < 0) continue;  // this row finished earlier
      const bool finished = gen.finish_reason(r) != FinishReason::None;
      std::string piece;
      // A terminating special EOS token (e.g. <|im_end|>) is kept in token_ids but not shown as text,
      // as mlx-lm prints it; an ordinary token chosen as EOS keeps its text.
      bool hidden = tokenizer && gen.finish_reason(r) == FinishReason::Eos && tokenizer->is_special(token);
      if (detok[r] && !hidden) piece = detok[r]->push(token);
      if (detok[r] && finished) piece += detok[r]->flush();
      texts[r] += piece;
      if (callback && r == 0) callback(token, piece);
    }
  }

  GenerationResult result;
  result.prompt_token_ids = prompt_ids;
  int total = 0;
  for (int r = 0; r < n; ++r) {
    GeneratedSequence seq;
    seq.token_ids = gen.generated(r);
    seq.text = std::move(texts[r]);
    seq.finish_reason = gen.finish_reason(r);
    seq.scores = gen.scores(r);
    seq.logits = gen.logits(r);
    if (seq.scores) seq.token_scores = chosen(*seq.scores, seq.token_ids);
    if (seq.logits) seq.token_logits = chosen(*seq.logits, seq.token_ids);
    seq.logprobs = gen.logprobs(r);
    total += static_cast<int>(seq.token_ids.size());
    result.sequences.push_back(std::move(seq));
  }
  auto& s = result.stats;
  s.prompt_tokens = static_cast<int>(prompt_ids.size());
  s.generated_tokens = total;
  if (gen.prefill_seconds() > 0) s.prefill_tokens_per_s = s.prompt_tokens / gen.prefill_seconds();
  // Every sequence's first token comes with the prefill; the rest are decode.
  if (total > n && gen.decode_seconds() > 0) s.decode_tokens_per_s = (total - n) / gen.decode_seconds();
  s.peak_memory_bytes = mx::get_peak_memory();
  s.memory_trace = gen.memory_trace();
  return result;
}

}  // namespace mlxgp
