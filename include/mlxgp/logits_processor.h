// Logits processors: small clone-able objects that transform next-token logits [B, V] on the
// device (no host loops over the vocabulary), composed into a pipeline in transformers' order
// (GenerationMixin._get_logits_processor: processors first, then the sampling warpers
// temperature -> top_k -> top_p when do_sample).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/generation_config.h"

namespace mlxgp {

// A processor's CPU form for one step: transforms one row of float32 logits in place, given that row's
// token ids so far (prompt + generated; empty unless the processor needs_ids()).
using RowKernel = std::function<void(std::span<float> logits, std::span<const int32_t> ids)>;

class LogitsProcessor {
 public:
  virtual ~LogitsProcessor() = default;
  // Called once with the prompt ids [B, T] before the first apply(); stateful processors start here.
  virtual void on_prompt(const mlx::core::array& ids) {}
  // logits [B, V] float32, ids [B, T] all tokens so far (prompt + generated) -> new logits [B, V].
  // `ids` is only materialised when needs_ids() is true; otherwise it may be an empty placeholder.
  virtual mlx::core::array apply(const mlx::core::array& logits, const mlx::core::array& ids) = 0;
  // Called with the chosen tokens [B] after each step.
  virtual void on_token(const mlx::core::array& tokens) {}
  virtual bool needs_ids() const { return false; }
  virtual std::unique_ptr<LogitsProcessor> clone() const = 0;
  // The CPU fast path. On the CPU device, a run of consecutive processors that all return a kernel here
  // executes as ONE primitive looping over the rows (instead of a dozen [B, V] device ops each), so the
  // whole pipeline costs a few passes over the vocabulary per step. Called instead of apply() for this
  // step, at the same point (same checks and errors); the kernel runs later, so it captures by value.
  // nullopt: this processor always uses apply().
  virtual std::optional<RowKernel> row_kernel(int vocab, int num_ids) { return std::nullopt; }
  // Throws [generate] when a token id this processor was given lies outside a vocabulary of `vocab`. Run
  // when a request is admitted, so that a batch refuses it before it shares a step with other requests
  // (apply() checks again against the logits it gets).
  virtual void check_vocabulary(int vocab) const {}
  // Throws what a row kernel of this processor found while the step ran (a constraint that no token can
  // satisfy): called when a step's processed scores leave a row without a token, before that step's tokens
  // are taken, so the reason is this processor's and no masked token is ever emitted.
  virtual void raise_pending() {}
};

// transformers TemperatureLogitsWarper: logits / temperature.
std::unique_ptr<LogitsProcessor> make_temperature_warper(double temperature);
// transformers TopKLogitsWarper: tokens below the k-th largest logit -> -inf (ties with it kept).
std::unique_ptr<LogitsProcessor> make_top_k_warper(int top_k, int min_tokens_to_keep = 1);
// transformers TopPLogitsWarper: tokens outside the nucleus -> -inf.
std::unique_ptr<LogitsProcessor> make_top_p_warper(double top_p, int min_tokens_to_keep = 1);

// transformers RepetitionPenaltyLogitsProcessor (no padding: every id of the sequence counts).
std::unique_ptr<LogitsProcessor> make_repetition_penalty(double penalty);
// transformers NoRepeatNGramLogitsProcessor.
std::unique_ptr<LogitsProcessor> make_no_repeat_ngram(int ngram_size);
// transformers SequenceBiasLogitsProcessor: (sequence, bias) pairs; a repeated sequence keeps its last bias.
std::unique_ptr<LogitsProcessor> make_sequence_bias(const std::vector<std::pair<std::vector<int>, double>>& biases);
// transformers NoBadWordsLogitsProcessor: each sequence's last token gets -inf when the rest of it
// ends the ids (one-token sequences always); a bad word that is exactly one EOS id is dropped.
std::unique_ptr<LogitsProcessor> make_bad_words(const std::vector<std::vector<int>>& bad_words_ids,
                                                const std::vector<int>& eos);
// transformers ExponentialDecayLengthPenalty: from prompt length + start_index on, EOS logits grow
// by |logit| * (factor^n - 1).
std::unique_ptr<LogitsProcessor> make_exponential_decay(int start_index, double factor, std::vector<int> eos);
// transformers MinLengthLogitsProcessor as generate() sets it up: when min_new_tokens is set the limit
// is prompt length + min_new_tokens (it overrides min_length).
std::unique_ptr<LogitsProcessor> make_min_length(int min_length, std::optional<int> min_new_tokens,
                                                 std::vector<int> eos);
// transformers MinNewTokensLengthLogitsProcessor (the prompt length comes from on_prompt()).
std::unique_ptr<LogitsProcessor> make_min_new_tokens(int min_new_tokens, std::vector<int> eos);
// transformers SuppressTokensLogitsProcessor / SuppressTokensAtBeginLogitsProcessor.
std::unique_ptr<LogitsProcessor> make_suppress_tokens(std::vector<int> tokens);
std::unique_ptr<LogitsProcessor> make_begin_suppress_tokens(std::vector<int> tokens, bool forced_bos);
// transformers ForcedBOSTokenLogitsProcessor / ForcedEOSTokenLogitsProcessor (max_length is the
// effective one: prompt length + max_new_tokens when that is set).
std::unique_ptr<LogitsProcessor> make_forced_bos(int bos_token_id);
std::unique_ptr<LogitsProcessor> make_forced_eos(int max_length, std::optional<int> max_new_tokens,
                                                 std::vector<int> eos);
// transformers InfNanRemoveLogitsProcessor and LogitNormalization.
std::unique_ptr<LogitsProcessor> make_remove_invalid_values();
std::unique_ptr<LogitsProcessor> make_renormalize();
// transformers MinPLogitsWarper, TypicalLogitsWarper, EpsilonLogitsWarper, EtaLogitsWarper.
std::unique_ptr<LogitsProcessor> make_min_p_warper(double min_p, int min_tokens_to_keep = 1);
std::unique_ptr<LogitsProcessor> make_typical_warper(double mass, int min_tokens_to_keep = 1);
std::unique_ptr<LogitsProcessor> make_epsilon_warper(double epsilon, int min_tokens_to_keep = 1);
std::unique_ptr<LogitsProcessor> make_eta_warper(double epsilon, int min_tokens_to_keep = 1);

// OpenAI/vLLM presence_penalty and frequency_penalty (no transformers class): over the GENERATED
// tokens only (the ids after the prompt; the prompt does not count),
// logits -= frequency * count + presence * (count > 0).
std::unique_ptr<LogitsProcessor> make_presence_frequency_penalty(double presence, double frequency);
// OpenAI logit_bias: bias added to listed tokens every step; a token listed twice keeps its last bias.
std::unique_ptr<LogitsProcessor> make_logit_bias(const LogitBias& bias);

class Model;
class Tokenizer;

// llama.cpp's DRY sampler (llama-sampling.cpp, from koboldcpp): a token that would extend a sequence
// repeated earlier in the last `last_n` ids (-1: all of them, prompt included) by more than
// `allowed_length` tokens loses multiplier * base^(repeat length - allowed_length) from its logit.
// A repeat stops at a sequence breaker: each breaker string is matched against the token texts as
// llama.cpp does (a token containing it is a one-token breaker, never penalised; a token ending in a
// prefix of it is followed by the tokenisation of the rest). `tokenizer` is needed when breakers are
// given. Reads its state from the ids.
std::unique_ptr<LogitsProcessor> make_dry_penalty(double multiplier, double base, int allowed_length, int last_n,
                                                  const std::vector<std::string>& breakers,
                                                  std::shared_ptr<const Tokenizer> tokenizer);
// llama.cpp top-n-sigma: tokens with a logit below max - n * std (over the finite logits) -> -inf.
std::unique_ptr<LogitsProcessor> make_top_n_sigma_warper(double n);
// llama.cpp XTC: per row and step, with `probability` (a draw from an mt19937 seeded with `seed`),
// every token with probability >= threshold except the least likely of them -> -inf, when at least
// two reach it and min_keep candidates stay. The probabilities are taken at temperature 1 (the
// logits times `temperature`), as llama.cpp runs XTC before its temperature.
std::unique_ptr<LogitsProcessor> make_xtc_warper(double probability, double threshold, double temperature,
                                                 uint32_t seed, int min_tokens_to_keep = 1);

// transformers UnbatchedClassifierFreeGuidanceLogitsProcessor: an unconditional forward of `model`
// with its own KV cache over `negative_prompt_ids` (default: the last prompt token), then each
// generated token; out = scale * (log_softmax(cond) - log_softmax(uncond)) + log_softmax(uncond).
// Every row of a batch shares the negative prompt. The model must outlive the processor. Its cache stores
// keys and values in `kv_cache_dtype` (GenerationConfig's), as the conditional pass's does.
std::unique_ptr<LogitsProcessor> make_classifier_free_guidance(
    double scale, Model& model, std::optional<std::vector<int>> negative_prompt_ids,
    std::optional<std::string> kv_cache_dtype = std::nullopt);

// force_words_ids outside beam search (greedy and sampling): a produced first token of a forced word
// forces its continuation; when the tokens left only just fit the missing words, one is started;
// EOS is banned until every constraint has appeared (a disjunctive constraint is met by any of its
// alternatives). Budget: max_new_tokens, else max_length - prompt length, capped by `context`
// - prompt length when context > 0 (the Generator's budget).
std::unique_ptr<LogitsProcessor> make_force_words(const ForceWords& words, std::vector<int> eos,
                                                  std::optional<int> max_new_tokens, int max_length, int context = 0);

// A user logits processor (the C++ form of a custom transformers LogitsProcessor): called with the
// scores [B, V] and all ids [B, T], returns new scores of the same shape (device arrays).
using LogitsCallback = std::function<mlx::core::array(const mlx::core::array& logits, const mlx::core::array& ids)>;
std::unique_ptr<LogitsProcessor> make_callback_processor(LogitsCallback fn);
// transformers PrefixConstrainedLogitsProcessor: fn(batch_id, ids of the row) -> allowed next token
// ids (non-empty). Row r belongs to batch entry r / rows_per_batch (HF: num_beams, or
// num_return_sequences outside beams). When every allowed token of an entry is already -inf, the
// entry's allowed tokens get 0, as in HF.
using PrefixAllowedTokensFn = std::function<std::vector<int>(int batch_id, const std::vector<int>& ids)>;
std::unique_ptr<LogitsProcessor> make_prefix_allowed_tokens(PrefixAllowedTokensFn fn, int rows_per_batch = 1);

class LogitsProcessorList {
 public:
  LogitsProcessorList() = default;
  LogitsProcessorList(const LogitsProcessorList& other);
  LogitsProcessorList& operator=(const LogitsProcessorList& other);
  LogitsProcessorList(LogitsProcessorList&&) = default;
  LogitsProcessorList& operator=(LogitsProcessorList&&) = default;

  void add(std::unique_ptr<LogitsProcessor> p) { items_.push_back(std::move(p)); }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  bool needs_ids() const;
  void on_prompt(const mlx::core::array& ids);
  mlx::core::array apply(const mlx::core::array& logits, const mlx::core::array& ids);
  void on_token(const mlx::core::array& tokens);
  void check_vocabulary(int vocab) const;
  void raise_pending();

 private:
  std::vector<std::unique_ptr<LogitsProcessor>> items_;
};

// What some processors need beyond the config.
struct ProcessorContext {
  // Classifier-free guidance runs its own unconditional forward; force_words_ids reads the context size.
  Model* model = nullptr;
  // CFG's unconditional prompt (HF negative_prompt_ids); unset: the last prompt token, as HF does.
  std::optional<std::vector<int>> negative_prompt_ids;
  // HF generate(prefix_allowed_tokens_fn=...): placed where transformers puts it (after min_new_tokens).
  PrefixAllowedTokensFn prefix_allowed_tokens_fn;
  // HF generate(logits_processor=[...]): user processors, cloned into the pipeline after the built-in
  // processors and before the warpers, as transformers merges a custom list.
  std::vector<std::shared_ptr<const LogitsProcessor>> logits_processors;
  // Structured outputs (json_schema, regex, grammar) read the token texts from the tokenizer.
  std::shared_ptr<const Tokenizer> tokenizer;
  // Speculative verification: the ids may end in draft candidates that the processors' own masks will
  // refuse (the positions after them are never used), so a constraint must not fail on them.
  bool tentative_ids = false;
  // Beam search: a beam carried at -inf score (fewer finite candidates than beams, as BeamSearchScorer
  // takes them) may hold a token a constraint refuses; that row is left unmasked (it can never win), not
  // an error. A finite beam with no token left is still one.
  bool dead_beams = false;
  // The warpers' min_tokens_to_keep: 1, except inside beam search, where transformers keeps
  // len(eos) + 1 (2 without EOS) so that a non-EOS continuation always survives.
  int min_tokens_to_keep = 1;
  // XTC's coin: a seed drawn from the request's RNG (DecodeGroup); unset: config.seed, else a fresh one.
  std::optional<uint32_t> rng_seed;
};

// The pipeline for a validated config (eos_token_id resolved, see with_model_defaults), in
// transformers' order (_get_logits_processor). Processors are only added when they change
// something, warpers only when do_sample, renormalize_logits last, as transformers does.
// Full order: guidance_scale (CFG, first as in HF; needs context.model), sequence_bias,
// repetition_penalty, no_repeat_ngram, bad_words, min_length, min_new_tokens, prefix_allowed_tokens_fn,
// forced_bos, forced_eos, remove_invalid_values, exponential_decay, suppress_tokens,
// begin_suppress_tokens, user processors; then the non-HF ones, like vLLM before its sampling
// parameters: presence/frequency penalty, logit_bias, then llama.cpp's DRY (after its penalties),
// force_words_ids; then the warpers (temperature, top_n_sigma, top_k, top_p, min_p, typical_p,
// epsilon, eta, then XTC, at llama.cpp's places relative to these) and renormalize_logits.
// Mirostat is a sampler (core/sampler.h), not a processor.
LogitsProcessorList build_logits_processors(const GenerationConfig& config);
LogitsProcessorList build_logits_processors(const GenerationConfig& config, const ProcessorContext& context);

}  // namespace mlxgp
