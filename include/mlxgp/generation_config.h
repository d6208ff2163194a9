// GenerationConfig: the HF `GenerationConfig` fields this project implements, with HF names and
// defaults. Like gemma.cpp's RuntimeConfig, ONE field list (GenerationConfig::for_each_field) names
// each field once with its default, help and bounds; JSON load/save, CLI flags, validation and
// printing are all driven by it, so a new field is added in one place.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace mlxgp {

// Inclusive/exclusive numeric bounds of a field, checked by validate().
struct FieldBounds {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false, hi_open = false;
  static FieldBounds none() { return {}; }
  static FieldBounds at_least(double v) { return {v, std::numeric_limits<double>::infinity(), false, false}; }
  static FieldBounds above(double v) { return {v, std::numeric_limits<double>::infinity(), true, false}; }
  static FieldBounds range(double lo, double hi, bool lo_open = false, bool hi_open = false) {
    return {lo, hi, lo_open, hi_open};
  }
};

// HF sequence_bias: (token id sequence, bias) pairs.
using SequenceBias = std::vector<std::pair<std::vector<int>, double>>;
// OpenAI-style logit_bias: (token id, bias) pairs added to the logits every step.
using LogitBias = std::vector<std::pair<int, double>>;
// HF force_words_ids: one entry per constraint, each a list of alternative token sequences
// (a phrasal constraint [[1,2]] has one alternative; a disjunctive one has several).
using ForceWords = std::vector<std::vector<std::vector<int>>>;
// HF early_stopping for beam search: True, False, or "never" (JSON true / false / "never").
enum class EarlyStopping { False, True, Never };

struct GenerationConfig {
  std::optional<int> max_new_tokens;
  int max_length;
  bool do_sample;
  double temperature;
  int top_k;
  double top_p;
  // nullopt: not set (the model's EOS is used); an empty list disables EOS stopping.
  std::optional<std::vector<int>> eos_token_id;
  std::optional<int> pad_token_id;
  std::optional<int> bos_token_id;
  int num_return_sequences;
  std::optional<double> max_time;
  std::optional<uint64_t> seed;  // not an HF field: makes sampling reproducible run to run
  // Logits processors (transformers GenerationMixin._get_logits_processor), neutral by default.
  std::optional<SequenceBias> sequence_bias;
  double repetition_penalty;
  int no_repeat_ngram_size;
  std::optional<std::vector<std::vector<int>>> bad_words_ids;
  int min_length;
  std::optional<int> min_new_tokens;
  std::optional<std::vector<int>> suppress_tokens;
  std::optional<std::vector<int>> begin_suppress_tokens;
  std::optional<int> forced_bos_token_id;
  std::optional<std::vector<int>> forced_eos_token_id;
  bool remove_invalid_values;
  std::optional<std::vector<double>> exponential_decay_length_penalty;  // [start_index, decay_factor]
  bool renormalize_logits;
  // Sampling warpers after top_p (only used when do_sample).
  std::optional<double> min_p;
  double typical_p;
  double epsilon_cutoff;
  double eta_cutoff;
  // OpenAI/vLLM penalties (not HF fields): logits -= presence * [count > 0] + frequency * count over
  // the generated tokens.
  double presence_penalty;
  double frequency_penalty;
  std::optional<LogitBias> logit_bias;  // not an HF field (OpenAI logit_bias)
  // llama.cpp's samplers under llama.cpp's names and defaults (not HF fields; docs/samplers.md).
  double dry_multiplier;
  double dry_base;
  int dry_allowed_length;
  int dry_penalty_last_n;
  std::vector<std::string> dry_sequence_breakers;
  double top_n_sigma;
  double xtc_probability;
  double xtc_threshold;
  int mirostat;  // 0 off, 1 mirostat, 2 mirostat v2
  double mirostat_tau;
  double mirostat_eta;
  std::optional<ForceWords> force_words_ids;
  std::optional<std::vector<std::string>> stop_strings;
  std::optional<double> guidance_scale;  // classifier-free guidance (HF UnbatchedClassifierFreeGuidance)
  // Beam search (beam_search.h): beams, diverse groups, and the finished-hypothesis score's length penalty.
  int num_beams;
  int num_beam_groups;
  double diversity_penalty;
  double length_penalty;
  EarlyStopping early_stopping;
  // Speculative decoding (speculative.h): a draft checkpoint, or the target's first draft_layers layers.
  bool use_speculative;
  std::optional<std::string> draft_model;
  std::optional<int> draft_layers;
  int num_draft_tokens;
  bool speculative_exact_match;  // mlx-lm's acceptance rule instead of rejection sampling
  // Prompt-lookup decoding (HF prompt_lookup_num_tokens / max_matching_ngram_size).
  std::optional<int> prompt_lookup_num_tokens;
  std::optional<int> max_matching_ngram_size;
  // KV caches (cache_options.h; mlx-lm generate's max_kv_size / kv_bits / kv_group_size /
  // quantized_kv_start).
  std::optional<int> max_kv_size;
  int kv_keep;
  std::optional<int> kv_bits;
  int kv_group_size;
  std::optional<int> quantized_kv_start;
  // The standard KV cache's storage dtype (vLLM's kv_cache_dtype; llama.cpp stores float16 by default):
  // "float16", "bfloat16" or "float32"; unset: the model's activations' dtype.
  std::optional<std::string> kv_cache_dtype;
  // Outputs: per-step processed scores, raw logits, and log-probabilities of the chosen tokens.
  bool output_scores;
  bool output_logits;
  bool output_logprobs;  // not an HF field (compute_transition_scores of the chosen tokens)
  // Structured outputs (not HF fields; vLLM's guided_json / guided_regex / guided_grammar, OpenAI's
  // response_format): at most one; the generated text is held to it by xgrammar's token masks.
  std::optional<std::string> json_schema;  // a JSON schema, as JSON text
  bool json_object;                        // any JSON value (OpenAI response_format json_object)
  std::optional<std::string> regex;
  std::optional<std::string> grammar;  // EBNF (xgrammar's GBNF dialect), root rule "root"

  GenerationConfig();  // every field at its default from the list below

  // The field list. `v(field, "name", default, "help", bounds)`. Self is GenerationConfig or const
  // GenerationConfig, so readers and writers share the list.
  template <class Self, class Visitor>
  static void for_each_field(Self& c, Visitor&& v) {
    v(c.max_new_tokens, "max_new_tokens", std::optional<int>{},
      "maximum number of new tokens (wins over max_length when both are set)", FieldBounds::at_least(1));
    v(c.max_length, "max_length", 20, "maximum total length, prompt included (used when max_new_tokens is unset)",
      FieldBounds::at_least(1));
    v(c.do_sample, "do_sample", false, "sample from the distribution instead of greedy argmax", FieldBounds::none());
    v(c.temperature, "temperature", 1.0, "divide logits by this when sampling (> 0)", FieldBounds::at_least(0));
    v(c.top_k, "top_k", 50, "keep the k most likely tokens when sampling (0 = off)", FieldBounds::at_least(0));
    v(c.top_p, "top_p", 1.0, "nucleus sampling: keep the smallest set with probability >= p, in (0, 1]",
      FieldBounds::range(0, 1, true, false));
    v(c.eos_token_id, "eos_token_id", std::optional<std::vector<int>>{},
      "end-of-sequence token id(s), e.g. 2 or 2,3 (default: the model's)", FieldBounds::at_least(0));
    v(c.pad_token_id, "pad_token_id", std::optional<int>{}, "padding token id", FieldBounds::at_least(0));
    v(c.bos_token_id, "bos_token_id", std::optional<int>{}, "beginning-of-sequence token id", FieldBounds::at_least(0));
    v(c.num_return_sequences, "num_return_sequences", 1, "sequences returned per prompt (> 1 needs sampling)",
      FieldBounds::at_least(1));
    v(c.max_time, "max_time", std::optional<double>{}, "stop after this many seconds (finish_reason max_time)",
      FieldBounds::above(0));
    v(c.seed, "seed", std::optional<uint64_t>{}, "random seed for sampling (not an HF field)",
      FieldBounds::at_least(0));
    v(c.sequence_bias, "sequence_bias", std::optional<SequenceBias>{},
      "add a bias to a sequence's last token when the rest of it ends the ids; JSON [[[1,2],-1.5]], flag 1,2:-1.5;3:2",
      FieldBounds::at_least(0));
    v(c.repetition_penalty, "repetition_penalty", 1.0,
      "divide positive (multiply negative) logits of tokens already in the sequence by this (1 = off)",
      FieldBounds::above(0));
    v(c.no_repeat_ngram_size, "no_repeat_ngram_size", 0, "forbid repeating any n-gram of this size (0 = off)",
      FieldBounds::at_least(0));
    v(c.bad_words_ids, "bad_words_ids", std::optional<std::vector<std::vector<int>>>{},
      "token id sequences never generated; JSON [[1,2],[3]], flag 1,2;3", FieldBounds::at_least(0));
    v(c.min_length, "min_length", 0, "forbid EOS while the total length (prompt included) is below this",
      FieldBounds::at_least(0));
    v(c.min_new_tokens, "min_new_tokens", std::optional<int>{},
      "forbid EOS before this many new tokens (wins over min_length)", FieldBounds::at_least(0));
    v(c.suppress_tokens, "suppress_tokens", std::optional<std::vector<int>>{}, "token ids never generated, e.g. 5,7",
      FieldBounds::at_least(0));
    v(c.begin_suppress_tokens, "begin_suppress_tokens", std::optional<std::vector<int>>{},
      "token ids not generated as the first new token", FieldBounds::at_least(0));
    v(c.forced_bos_token_id, "forced_bos_token_id", std::optional<int>{},
      "force this token when the sequence has exactly one token", FieldBounds::at_least(0));
    v(c.forced_eos_token_id, "forced_eos_token_id", std::optional<std::vector<int>>{},
      "force one of these tokens as the last one when max_length is reached", FieldBounds::at_least(0));
    v(c.remove_invalid_values, "remove_invalid_values", false,
      "replace nan/inf logits by 0 / the largest finite values", FieldBounds::none());
    v(c.exponential_decay_length_penalty, "exponential_decay_length_penalty", std::optional<std::vector<double>>{},
      "[start_index, decay_factor]: after start_index new tokens, raise EOS logits by factor^n", FieldBounds::none());
    v(c.renormalize_logits, "renormalize_logits", false, "log-softmax the logits after all processors",
      FieldBounds::none());
    v(c.min_p, "min_p", std::optional<double>{},
      "when sampling, drop tokens less likely than min_p times the top token's probability, in [0, 1]",
      FieldBounds::range(0, 1));
    v(c.typical_p, "typical_p", 1.0, "when sampling, locally typical sampling mass in (0, 1] (1 = off)",
      FieldBounds::range(0, 1, true, false));
    v(c.epsilon_cutoff, "epsilon_cutoff", 0.0,
      "when sampling, drop tokens with probability below this, in [0, 1) (0 = off)",
      FieldBounds::range(0, 1, false, true));
    v(c.eta_cutoff, "eta_cutoff", 0.0, "when sampling, eta sampling cutoff in [0, 1) (0 = off)",
      FieldBounds::range(0, 1, false, true));
    v(c.presence_penalty, "presence_penalty", 0.0,
      "subtract this from the logits of tokens already generated (OpenAI semantics), in [-2, 2]",
      FieldBounds::range(-2, 2));
    v(c.frequency_penalty, "frequency_penalty", 0.0,
      "subtract this times the count of each generated token from its logit (OpenAI semantics), in [-2, 2]",
      FieldBounds::range(-2, 2));
    v(c.logit_bias, "logit_bias", std::optional<LogitBias>{},
      "add a bias to token logits every step; JSON {\"123\": -100} or [[123, -100]], flag 123:-100,7:2.5",
      FieldBounds::at_least(0));
    v(c.dry_multiplier, "dry_multiplier", 0.0,
      "llama.cpp DRY: penalise a token that would extend a repeated sequence by multiplier * base^(length - "
      "allowed_length) (0 = off)",
      FieldBounds::at_least(0));
    v(c.dry_base, "dry_base", 1.75, "llama.cpp DRY: base of the exponential penalty, >= 1", FieldBounds::at_least(1));
    v(c.dry_allowed_length, "dry_allowed_length", 2, "llama.cpp DRY: repeats up to this many tokens go unpenalised",
      FieldBounds::at_least(0));
    v(c.dry_penalty_last_n, "dry_penalty_last_n", -1,
      "llama.cpp DRY: how many last tokens (prompt included) are scanned (-1 = the whole context, 0 = off)",
      FieldBounds::at_least(-1));
    v(c.dry_sequence_breakers, "dry_sequence_breakers", std::vector<std::string>{"\n", ":", "\"", "*"},
      "llama.cpp DRY: strings that end a repeated sequence, matched against token texts; JSON list, flag a JSON list",
      FieldBounds::none());
    v(c.top_n_sigma, "top_n_sigma", -1.0,
      "when sampling, llama.cpp top-n-sigma: drop tokens whose logit is below max - n * std of the logits (<= 0 = off)",
      FieldBounds::none());
    v(c.xtc_probability, "xtc_probability", 0.0,
      "when sampling, llama.cpp XTC: with this probability per step, drop every token with probability >= "
      "xtc_threshold but the least likely of them, in [0, 1] (0 = off)",
      FieldBounds::range(0, 1));
    v(c.xtc_threshold, "xtc_threshold", 0.1, "llama.cpp XTC: probability threshold, in [0, 0.5]",
      FieldBounds::range(0, 0.5));
    v(c.mirostat, "mirostat", 0,
      "llama.cpp mirostat sampling: 1 (mirostat), 2 (mirostat v2) or 0 (off); replaces top_k/top_p/min_p/...",
      FieldBounds::range(0, 2));
    v(c.mirostat_tau, "mirostat_tau", 5.0, "mirostat: target surprise (entropy) in bits", FieldBounds::at_least(0));
    v(c.mirostat_eta, "mirostat_eta", 0.1, "mirostat: learning rate of mu", FieldBounds::at_least(0));
    v(c.force_words_ids, "force_words_ids", std::optional<ForceWords>{},
      "words that must appear; JSON [[1,2],[3]] or disjunctive [[[1,2],[4]]], flag 1,2;3 with | between alternatives",
      FieldBounds::at_least(0));
    v(c.stop_strings, "stop_strings", std::optional<std::vector<std::string>>{},
      "stop when the text ends with one of these; JSON \"x\" or [\"x\", \"y\"], flag a string or a JSON list",
      FieldBounds::none());
    v(c.guidance_scale, "guidance_scale", std::optional<double>{},
      "classifier-free guidance scale (1 = off); the unconditional branch uses the negative prompt",
      FieldBounds::at_least(0));
    v(c.num_beams, "num_beams", 1, "beam search with this many beams (1 = off)", FieldBounds::at_least(1));
    v(c.num_beam_groups, "num_beam_groups", 1, "diverse beam search: split the beams into this many groups",
      FieldBounds::at_least(1));
    v(c.diversity_penalty, "diversity_penalty", 0.0,
      "diverse beam search: subtract this per use of a token by earlier groups at the same step",
      FieldBounds::at_least(0));
    v(c.length_penalty, "length_penalty", 1.0,
      "beam search: a finished hypothesis scores sum(logprobs) / length^length_penalty", FieldBounds::none());
    v(c.early_stopping, "early_stopping", EarlyStopping::False,
      "beam search: true (stop at num_beams finished), false (heuristic) or never (exact)", FieldBounds::none());
    v(c.use_speculative, "use_speculative", false,
      "speculative decoding with draft_model or draft_layers (exact for greedy and sampling)", FieldBounds::none());
    v(c.draft_model, "draft_model", std::optional<std::string>{},
      "speculative decoding: draft checkpoint (folder or .gguf) sharing the target's tokenizer", FieldBounds::none());
    v(c.draft_layers, "draft_layers", std::optional<int>{},
      "speculative decoding: use the target's first N layers as the draft (self-speculation)",
      FieldBounds::at_least(1));
    v(c.num_draft_tokens, "num_draft_tokens", 3, "speculative decoding: tokens drafted per target forward",
      FieldBounds::at_least(1));
    v(c.speculative_exact_match, "speculative_exact_match", false,
      "speculative sampling: accept a draft token only when the target samples the same token (mlx-lm's rule)",
      FieldBounds::none());
    v(c.prompt_lookup_num_tokens, "prompt_lookup_num_tokens", std::optional<int>{},
      "prompt-lookup decoding: candidate tokens copied from the prompt per step", FieldBounds::at_least(1));
    v(c.max_matching_ngram_size, "max_matching_ngram_size", std::optional<int>{},
      "prompt-lookup decoding: longest n-gram matched against the prompt (default 2)", FieldBounds::at_least(1));
    v(c.max_kv_size, "max_kv_size", std::optional<int>{},
      "rotating KV cache of this many positions (keeps the first kv_keep)", FieldBounds::at_least(1));
    v(c.kv_keep, "kv_keep", 4, "rotating KV cache: leading positions always kept", FieldBounds::at_least(0));
    v(c.kv_bits, "kv_bits", std::optional<int>{}, "quantize the KV cache to this many bits (2, 3, 4, 5, 6 or 8)",
      FieldBounds::range(2, 8));
    v(c.kv_group_size, "kv_group_size", 64, "quantized KV cache group size", FieldBounds::at_least(1));
    v(c.quantized_kv_start, "quantized_kv_start", std::optional<int>{},
      "quantize the KV cache once it holds this many positions (default: from the start)", FieldBounds::at_least(0));
    v(c.kv_cache_dtype, "kv_cache_dtype", std::optional<std::string>{},
      "store the KV cache as float16, bfloat16 or float32 (default: the activations' dtype)", FieldBounds::none());
    v(c.output_scores, "output_scores", false, "return the processed scores of each step", FieldBounds::none());
    v(c.output_logits, "output_logits", false, "return the raw logits of each step", FieldBounds::none());
    v(c.output_logprobs, "output_logprobs", false, "return the log-probability of each chosen token (not an HF field)",
      FieldBounds::none());
    v(c.json_schema, "json_schema", std::optional<std::string>{},
      "structured output: the text must be JSON following this schema (JSON text; on the command line a file)",
      FieldBounds::none());
    v(c.json_object, "json_object", false, "structured output: the text must be one JSON value", FieldBounds::none());
    v(c.regex, "regex", std::optional<std::string>{}, "structured output: the text must match this regular expression",
      FieldBounds::none());
    v(c.grammar, "grammar", std::optional<std::string>{},
      "structured output: the text must follow this EBNF grammar with a rule `root` (on the command line a file)",
      FieldBounds::none());
  }
};

// Where a JSON config comes from. A model's generation_config.json is trusted loosely (unimplemented
// settings become warnings); the user's --config is strict.
enum class ConfigSource { Model, User };

// Applies the fields of a JSON object onto `config` (absent fields keep their value; null resets a
// field to its default). HF metadata keys (transformers_version, _from_model_config, ...) are ignored.
// Throws [config] on malformed JSON, wrongly typed values, keys that are not HF GenerationConfig
// fields ("unknown field 'x'"), and, for ConfigSource::User, HF fields not implemented yet set to a
// non-default value ("field 'num_beams' is not implemented yet"). For ConfigSource::Model those are
// returned as warning lines instead. Does not validate ranges: call validate() after all layers.
std::vector<std::string> apply_generation_config_json(GenerationConfig& config, const std::string& json_text,
                                                      ConfigSource source);

// Sets one field from command-line text ("12", "0.7", "2,3"; "1" for booleans). Throws [config] on a
// bad value or an unknown field name.
void set_generation_config_field(GenerationConfig& config, const std::string& name, const std::string& text);

// Field metadata for building CLI flags and help.
struct GenerationFieldInfo {
  std::string name;
  std::string help;
  std::string default_text;  // "" when the default is unset
  bool is_flag;              // booleans take no value
};
std::vector<GenerationFieldInfo> generation_config_fields();

// Throws [config] on any out-of-range or inconsistent setting, naming the field.
void validate(const GenerationConfig& config);

// All fields as a JSON object (unset optionals are null).
nlohmann::json to_json(const GenerationConfig& config);
// One "name = value" line per field.
std::string describe(const GenerationConfig& config);

}  // namespace mlxgp
