// The step-wise Generator (prefill, then one token per step, KV-cached) that streaming and chat reuse,
// and the preparation every generation shares: model defaults, prompt checks, cache options.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/cache_options.h"
#include "mlxgp/generation_config.h"
#include "mlxgp/generation_result.h"
#include "mlxgp/generator_options.h"
#include "mlxgp/model.h"

namespace mlxgp {

class DecodeGroup;  // src/generation/core/decode_group.h

// Fills the settings HF takes from the model when the generation config leaves them unset
// (GenerationConfig.from_model_config): eos/bos/pad token ids from the model config, then the tokenizer.
GenerationConfig with_model_defaults(GenerationConfig config, const ModelConfig& model_config,
                                     const Tokenizer* tokenizer);

// The checks every generation makes on its prompt before any work: ids inside the vocabulary, a
// prompt shorter than the model's context, max_length above the prompt (unless max_new_tokens is set).
// Throws [generate]. Returns how many tokens may be generated (the token budget).
int check_prompt(const Model& model, const std::vector<int>& prompt_ids, const GenerationConfig& config);

// The KV cache settings of a generation config (max_kv_size, kv_keep, kv_bits, kv_group_size,
// quantized_kv_start), for make_caches() / maybe_quantize_kv_caches().
CacheOptions cache_options_from(const GenerationConfig& config);

// Decodes num_return_sequences rows at once (HF expands the prompt to B = N rows when sampling): the
// prompt is prefilled once with one row and the KV caches are then tiled to N rows. A finished row keeps
// being computed until every row is done (HF pads it); its tokens are simply no longer recorded.
class Generator {
 public:
  // `config` is validated here (throws [config]). The model must outlive the generator. Throws
  // [generate] when stop_strings are set without options.tokenizer.
  Generator(Model& model, GenerationConfig config, GeneratorOptions options = {});

  // Checks the prompt (ids inside the vocabulary, shorter than the context), prefills the KV cache
  // in chunks and schedules the first token. Throws [generate] on bad input. The caches are the
  // config's (cache_options_from: standard, rotating for max_kv_size, quantized for kv_bits, converted
  // after each forward once quantized_kv_start is reached, as mlx-lm's generate_step does); with
  // options.prompt_cache they start from a copy of the saved prefix.
  void prefill(const std::vector<int>& prompt_ids);
  // Continues from caches that already hold the first caches[0]->offset() tokens of `prompt_ids`
  // (multi-turn chat, saved prompt caches; one batch row): only the rest is prefilled, while processors
  // still see the whole prompt. When the caches hold all of it, the last position is trimmed and
  // recomputed. Throws [generate] when the caches hold more than the prompt or cannot be trimmed.
  void prefill(const std::vector<int>& prompt_ids, KVCacheList caches);
  // One sequence (num_return_sequences == 1): returns the next token, waiting only for it (the step
  // after it is already queued, as in mlx-lm's generate_step). Call only while !done().
  int step();
  // Any number of sequences: the next token of every row, -1 for rows finished earlier. One host sync
  // for all rows. Call only while !done().
  const std::vector<int>& step_batch();

  ~Generator();
  int num_sequences() const { return batch_; }
  bool done() const;
  FinishReason finish_reason(int row = 0) const;
  const std::vector<int>& prompt() const;
  const std::vector<int>& generated(int row = 0) const;
  // Tokens this generation may produce at most (max_new_tokens / max_length / context limit).
  int token_budget() const;
  const GenerationConfig& config() const { return config_; }
  // The KV caches (num_sequences() rows). They hold the first cached_tokens() of prompt() + generated():
  // the final token is in them only when the step after it was already queued (take them to continue a
  // conversation).
  KVCacheList& caches() { return caches_; }
  int cached_tokens() const { return caches_.empty() ? 0 : caches_[0]->offset(); }

  // Per generated token of `row`, only when the config asked for them (otherwise nullopt / empty):
  // processed scores [n, V] (output_scores: what the sampler saw, HF's `scores`), raw logits [n, V]
  // (output_logits), and log_softmax(processed scores) at the chosen token (output_logprobs: HF
  // compute_transition_scores(normalize_logits=True)).
  std::optional<mlx::core::array> scores(int row = 0) const;
  std::optional<mlx::core::array> logits(int row = 0) const;
  std::vector<float> logprobs(int row = 0) const;

  double prefill_seconds() const;  // prefill start -> first token known
  double decode_seconds() const;   // first token -> last token known
  // The request side (processors, sampler, stopping, outputs) that generate() assembles results from.
  const DecodeGroup& group() const { return *group_; }
  // options.memory_trace_at's samples, in order, for the counts reached so far.
  const std::vector<MemorySample>& memory_trace() const { return memory_trace_; }

 private:
  mlx::core::array forward_token(const mlx::core::array& tokens);  // tokens [B] -> next tokens [B] (lazy)
  void queue(const mlx::core::array& tokens);                      // async_eval of the tokens and requested outputs

  Model& model_;
  GenerationConfig config_;
  GeneratorOptions options_;
  std::unique_ptr<DecodeGroup> group_;  // processors, sampler, stopping, recorded outputs, per-row state
  KVCacheList caches_;
  CacheOptions cache_options_;
  std::vector<MemorySample> memory_trace_;
  int batch_ = 1;
  std::optional<mlx::core::array> pending_;  // the next tokens [B], computing
};

}  // namespace mlxgp
