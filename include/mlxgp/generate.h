// Text generation: a step-wise Generator (prefill, then one token per step, KV-cached) that
// streaming, chat and speculative decoding reuse, and generate(), the one-call loop on top of it.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/cache_options.h"
#include "mlxgp/generation_config.h"
#include "mlxgp/logits_processor.h"
#include "mlxgp/model.h"
#include "mlxgp/stopping.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp {

struct PromptCache;  // prompt_cache.h
class DecodeGroup;  // src/generation/core/decode_group.h

struct GeneratorOptions {
  int prefill_chunk_size = 512;  // long prompts are prefilled in chunks of this many tokens
  // With a rotating or quantized KV cache (max_kv_size / kv_bits) the prompt is prefilled as mlx-lm's
  // generate_step does, whose results depend on the chunking: prompt[:-1] in chunks of this many
  // tokens, then the last prompt token alone. 2048 is generate_step's prefill_step_size default.
  int kv_prefill_step_size = 2048;
  // A saved prefix (prompt_cache.h): prefill(ids) starts from a copy of its caches. The prompt must
  // begin with its tokens (throws [prompt-cache] otherwise).
  std::shared_ptr<const PromptCache> prompt_cache;
  // Token counts (generated tokens of row 0) at which the Generator records MLX's peak and active
  // memory (memory_trace(); the memory benchmark).
  std::vector<int> memory_trace_at;
  // Needed for stop_strings (as transformers generate() needs tokenizer=); generate() fills it in.
  std::shared_ptr<const Tokenizer> tokenizer;
  // User logits processors (any LogitsProcessor subclass, e.g. make_callback_processor()), cloned into
  // each generation's pipeline after transformers' built-in processors and before the sampling warpers
  // and renormalize_logits: where transformers 5.x merges a custom LogitsProcessorList
  // (_get_logits_processor). Unlike HF, one of the same class as a built-in is added, not substituted.
  std::vector<std::shared_ptr<const LogitsProcessor>> logits_processors;
  // HF generate(prefix_allowed_tokens_fn=...): the allowed next tokens of each row.
  PrefixAllowedTokensFn prefix_allowed_tokens_fn;
  // A custom stopping criterion (stopping.h); finish_reason "stop_callback".
  StopCallback stop_callback;
  // Classifier-free guidance's unconditional prompt (HF negative_prompt_ids; guidance_scale).
  std::optional<std::vector<int>> negative_prompt_ids;
};

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

// MLX memory at a given number of generated tokens (mx::get_peak_memory / get_active_memory).
struct MemorySample {
  int tokens = 0;
  size_t peak_bytes = 0;
  size_t active_bytes = 0;
};

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
  std::optional<mx::array> scores(int row = 0) const;
  std::optional<mx::array> logits(int row = 0) const;
  std::vector<float> logprobs(int row = 0) const;

  double prefill_seconds() const;  // prefill start -> first token known
  double decode_seconds() const;   // first token -> last token known
  // The request side (processors, sampler, stopping, outputs) that generate() assembles results from.
  const DecodeGroup& group() const { return *group_; }
  // options.memory_trace_at's samples, in order, for the counts reached so far.
  const std::vector<MemorySample>& memory_trace() const { return memory_trace_; }

 private:
  mx::array forward_token(const mx::array& tokens);  // tokens [B] -> next tokens [B] (lazy)
  void queue(const mx::array& tokens);                // async_eval of the tokens and requested outputs

  Model& model_;
  GenerationConfig config_;
  GeneratorOptions options_;
  std::unique_ptr<DecodeGroup> group_;  // processors, sampler, stopping, recorded outputs, per-row state
  KVCacheList caches_;
  CacheOptions cache_options_;
  std::vector<MemorySample> memory_trace_;
  int batch_ = 1;
  std::optional<mx::array> pending_;  // the next tokens [B], computing
};

struct GeneratedSequence {
  std::vector<int> token_ids;  // generated tokens only (a final EOS token included, as in HF)
  // Decode of token_ids, less a final special EOS token (as mlx-lm prints it). A stop string stays in,
  // with whatever the last token holds after it (HF returns that token too).
  std::string text;
  FinishReason finish_reason = FinishReason::None;
  // Only when the config asks (output_scores / output_logits / output_logprobs); see Generator::scores().
  // Beam search: step t's row of the beam the token was chosen from (beam_indices[t]; transformers
  // compute_transition_scores(sequences, scores, beam_indices)), where the processed scores are
  // log_softmax(logits) then the processors, before the running beam score is added (constrained beams:
  // after, as transformers 4.56 records them). logprobs = log_softmax of that row at the chosen token.
  std::optional<mx::array> scores;  // [n, V] processed scores
  std::optional<mx::array> logits;  // [n, V] raw logits
  std::vector<float> token_scores;  // output_scores: each chosen token's processed score
  std::vector<float> token_logits;  // output_logits: each chosen token's raw logit
  std::vector<float> logprobs;      // output_logprobs: each chosen token's log-probability
  // Beam search only (HF sequences_scores / beam_indices): the hypothesis score
  // (sum of log-probs / length^length_penalty) and, per generated token, the beam it came from.
  std::optional<float> sequence_score;
  std::vector<int> beam_indices;
};

// Speculative and prompt-lookup decoding statistics.
struct SpeculativeStats {
  int drafted_tokens = 0;   // candidate tokens proposed (draft model or prompt lookup)
  int accepted_tokens = 0;  // candidates the target accepted
  int target_forwards = 0;  // verification forwards of the target model (prefill excluded)
  int emitted_tokens = 0;   // tokens produced by those forwards (accepted + one per forward, budget permitting)
  double acceptance_rate() const { return drafted_tokens ? double(accepted_tokens) / drafted_tokens : 0.0; }
  double tokens_per_target_forward() const { return target_forwards ? double(emitted_tokens) / target_forwards : 0.0; }
};

struct GenerationStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;         // over all sequences
  double prefill_tokens_per_s = 0;  // prompt tokens / time to the first token
  double decode_tokens_per_s = 0;   // tokens after each sequence's first / time after the first step
  size_t peak_memory_bytes = 0;     // mx::get_peak_memory() over the run
  std::vector<MemorySample> memory_trace;  // GeneratorOptions::memory_trace_at's samples
  std::optional<SpeculativeStats> speculative;  // use_speculative / prompt_lookup_num_tokens only
};

struct GenerationResult {
  std::vector<int> prompt_token_ids;
  std::vector<GeneratedSequence> sequences;
  GenerationStats stats;
};

// Called with each token and the text it completes (complete UTF-8 only; may be empty). With several
// sequences it streams the first one only (use Generator::step_batch() to follow every row).
using TokenCallback = std::function<void(int token, const std::string& text)>;

// Runs a full generation: num_return_sequences sequences. Dispatches on the config: num_beams > 1 runs
// beam_search() (beam_search.h); use_speculative or prompt_lookup_num_tokens run speculative_generate()
// (speculative.h); otherwise the Generator below. `tokenizer` may be null (text stays empty;
// stop_strings then throw [generate]); it also becomes options.tokenizer when that is unset. Config
// defaults missing from `config` are taken from the model (with_model_defaults).
GenerationResult generate(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                          const std::vector<int>& prompt_ids, const GenerationConfig& config,
                          const TokenCallback& callback = {}, GeneratorOptions options = {});

}  // namespace mlxgp
