// LogitsProcessorList and the pipeline builder (transformers GenerationMixin._get_logits_processor order).
#include <random>

#include <mlx/mlx.h>

#include "generation/processors/row_kernels.h"
#include "generation/structured/grammar_constraint.h"
#include "mlxgp/error.h"
#include "mlxgp/logits_processor.h"
#include "mlxgp/model.h"

namespace mx = mlx::core;

namespace mlxgp {

LogitsProcessorList::LogitsProcessorList(const LogitsProcessorList& other) {
  for (auto& p : other.items_) items_.push_back(p->clone());
}

LogitsProcessorList& LogitsProcessorList::operator=(const LogitsProcessorList& other) {
  if (this != &other) {
    items_.clear();
    for (auto& p : other.items_) items_.push_back(p->clone());
  }
  return *this;
}

bool LogitsProcessorList::needs_ids() const {
  for (auto& p : items_)
    if (p->needs_ids()) return true;
  return false;
}

void LogitsProcessorList::on_prompt(const mx::array& ids) {
  for (auto& p : items_) p->on_prompt(ids);
}

mx::array LogitsProcessorList::apply(const mx::array& logits, const mx::array& ids) {
  mx::array out = logits;
  if (!processors::row_kernels_enabled(logits)) {
    for (auto& p : items_) out = p->apply(out, ids);
    return out;
  }
  // Consecutive processors with a CPU row kernel run as one primitive; the others in between apply()
  // as device ops, in the same order.
  const int vocab = logits.shape(-1);
  const int num_ids = ids.ndim() == 2 ? ids.shape(1) : 0;
  std::vector<RowKernel> run;
  auto flush = [&] {
    if (run.empty()) return;
    out = processors::apply_row_kernels(out, ids, std::move(run));
    run.clear();
  };
  for (auto& p : items_) {
    if (auto k = p->row_kernel(vocab, num_ids)) {
      if (*k) run.push_back(std::move(*k));  // an empty kernel: nothing to do this step
    } else {
      flush();
      out = p->apply(out, ids);
    }
  }
  flush();
  return out;
}

void LogitsProcessorList::check_vocabulary(int vocab) const {
  for (auto& p : items_) p->check_vocabulary(vocab);
}

void LogitsProcessorList::raise_pending() {
  for (auto& p : items_) p->raise_pending();
}

void LogitsProcessorList::on_token(const mx::array& tokens) {
  for (auto& p : items_) p->on_token(tokens);
}

LogitsProcessorList build_logits_processors(const GenerationConfig& config) {
  return build_logits_processors(config, ProcessorContext{});
}

LogitsProcessorList build_logits_processors(const GenerationConfig& config, const ProcessorContext& context) {
  LogitsProcessorList list;
  const std::vector<int> eos = config.eos_token_id.value_or(std::vector<int>{});
  // HF adds classifier-free guidance first, and only when the scale is not 1.
  if (config.guidance_scale && *config.guidance_scale != 1.0) {
    if (!context.model) fail("config", "guidance_scale needs the model for its unconditional forward");
    list.add(make_classifier_free_guidance(*config.guidance_scale, *context.model, context.negative_prompt_ids,
                                           config.kv_cache_dtype));
  }
  if (config.sequence_bias) list.add(make_sequence_bias(*config.sequence_bias));
  if (config.repetition_penalty != 1.0) list.add(make_repetition_penalty(config.repetition_penalty));
  if (config.no_repeat_ngram_size > 0) list.add(make_no_repeat_ngram(config.no_repeat_ngram_size));
  if (config.bad_words_ids) list.add(make_bad_words(*config.bad_words_ids, eos));
  // HF needs an EOS for the min-length processors; min_new_tokens makes min_length = prompt + it.
  if (!eos.empty() && (config.min_new_tokens || config.min_length > 0))
    list.add(make_min_length(config.min_length, config.min_new_tokens, eos));
  if (!eos.empty() && config.min_new_tokens && *config.min_new_tokens > 0)
    list.add(make_min_new_tokens(*config.min_new_tokens, eos));
  // HF: PrefixConstrainedLogitsProcessor(fn, max(num_beams, num_return_sequences)).
  if (context.prefix_allowed_tokens_fn)
    list.add(make_prefix_allowed_tokens(context.prefix_allowed_tokens_fn, config.num_return_sequences));
  if (config.forced_bos_token_id) list.add(make_forced_bos(*config.forced_bos_token_id));
  if (config.forced_eos_token_id)
    list.add(make_forced_eos(config.max_length, config.max_new_tokens, *config.forced_eos_token_id));
  if (config.remove_invalid_values) list.add(make_remove_invalid_values());
  if (config.exponential_decay_length_penalty)
    list.add(make_exponential_decay(static_cast<int>((*config.exponential_decay_length_penalty)[0]),
                                    (*config.exponential_decay_length_penalty)[1], eos));
  if (config.suppress_tokens) list.add(make_suppress_tokens(*config.suppress_tokens));
  if (config.begin_suppress_tokens)
    list.add(make_begin_suppress_tokens(*config.begin_suppress_tokens, config.forced_bos_token_id.has_value()));
  // HF _merge_criteria_processor_list appends a user's processors after the built-in ones.
  for (auto& p : context.logits_processors)
    if (p) list.add(p->clone());
  // Not HF: vLLM applies penalties and logit_bias to the logits before its sampling parameters, so
  // they go after transformers' processors and before the warpers. force_words_ids comes last so its
  // masks hold whatever the biases did; the warpers always keep the best token, so they cannot empty a row.
  if (config.presence_penalty != 0.0 || config.frequency_penalty != 0.0)
    list.add(make_presence_frequency_penalty(config.presence_penalty, config.frequency_penalty));
  if (config.logit_bias && !config.logit_bias->empty()) list.add(make_logit_bias(*config.logit_bias));
  // llama.cpp's DRY follows its logit bias and penalties (common/sampling.cpp's default chain).
  if (config.dry_multiplier > 0 && config.dry_penalty_last_n != 0)
    list.add(make_dry_penalty(config.dry_multiplier, config.dry_base, config.dry_allowed_length,
                              config.dry_penalty_last_n, config.dry_sequence_breakers, context.tokenizer));
  if (config.force_words_ids)
    list.add(make_force_words(*config.force_words_ids, eos, config.max_new_tokens, config.max_length,
                              context.model ? context.model->config().max_position_embeddings : 0));
  // Structured output last before the warpers, where transformers puts a user's processor (xgrammar's
  // own transformers LogitsProcessor): the other processors' masks and biases commute with it, so only
  // the warpers, which renormalise, see the constrained distribution.
  if (wants_grammar(config))
    list.add(make_grammar_constraint(
        config, context.tokenizer,
        context.model ? context.model->config().vocab_size : (context.tokenizer ? context.tokenizer->vocab_size() : 0),
        context.tentative_ids, context.dead_beams));
  if (config.do_sample) {
    const int keep = context.min_tokens_to_keep;
    if (config.temperature != 1.0) list.add(make_temperature_warper(config.temperature));
    // llama.cpp runs top-n-sigma before top_k; its mask does not change with the temperature.
    if (config.top_n_sigma > 0) list.add(make_top_n_sigma_warper(config.top_n_sigma));
    if (config.top_k != 0) list.add(make_top_k_warper(config.top_k, keep));
    if (config.top_p < 1.0) list.add(make_top_p_warper(config.top_p, keep));
    if (config.min_p) list.add(make_min_p_warper(*config.min_p, keep));
    if (config.typical_p < 1.0) list.add(make_typical_warper(config.typical_p, keep));
    if (config.epsilon_cutoff > 0.0 && config.epsilon_cutoff < 1.0)
      list.add(make_epsilon_warper(config.epsilon_cutoff, keep));
    if (config.eta_cutoff > 0.0 && config.eta_cutoff < 1.0) list.add(make_eta_warper(config.eta_cutoff, keep));
    // llama.cpp runs XTC after its truncation samplers and before its temperature: last here, on the
    // probabilities at temperature 1.
    if (config.xtc_probability > 0) {
      uint32_t seed = context.rng_seed ? *context.rng_seed
                      : config.seed    ? static_cast<uint32_t>(*config.seed ^ (*config.seed >> 32))
                                       : std::random_device()();
      list.add(make_xtc_warper(config.xtc_probability, config.xtc_threshold, config.temperature, seed, keep));
    }
  }
  if (config.renormalize_logits) list.add(make_renormalize());
  return list;
}

}  // namespace mlxgp
