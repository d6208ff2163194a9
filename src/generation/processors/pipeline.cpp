// LogitsProcessorList and the pipeline builder (transformers GenerationMixin._get_logits_processor order).
#include <mlx/mlx.h>

#include "mlxgp/logits_processor.h"

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
  for (auto& p : items_) out = p->apply(out, ids);
  return out;
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
  if (config.sequence_bias) list.add(make_sequence_bias(*config.sequence_bias));
  if (config.repetition_penalty != 1.0) list.add(make_repetition_penalty(config.repetition_penalty));
  if (config.no_repeat_ngram_size > 0) list.add(make_no_repeat_ngram(config.no_repeat_ngram_size));
  if (config.bad_words_ids) list.add(make_bad_words(*config.bad_words_ids, eos));
  // HF needs an EOS for the min-length processors; min_new_tokens makes min_length = prompt + it.
  if (!eos.empty() && (config.min_new_tokens || config.min_length > 0))
    list.add(make_min_length(config.min_length, config.min_new_tokens, eos));
  if (!eos.empty() && config.min_new_tokens && *config.min_new_tokens > 0)
    list.add(make_min_new_tokens(*config.min_new_tokens, eos));
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
  if (config.do_sample) {
    // min_tokens_to_keep is 1 outside beam search (HF).
    if (config.temperature != 1.0) list.add(make_temperature_warper(config.temperature));
    if (config.top_k != 0) list.add(make_top_k_warper(config.top_k, 1));
    if (config.top_p < 1.0) list.add(make_top_p_warper(config.top_p, 1));
    if (config.min_p) list.add(make_min_p_warper(*config.min_p, 1));
    if (config.typical_p < 1.0) list.add(make_typical_warper(config.typical_p, 1));
    if (config.epsilon_cutoff > 0.0 && config.epsilon_cutoff < 1.0) list.add(make_epsilon_warper(config.epsilon_cutoff, 1));
    if (config.eta_cutoff > 0.0 && config.eta_cutoff < 1.0) list.add(make_eta_warper(config.eta_cutoff, 1));
  }
  if (config.renormalize_logits) list.add(make_renormalize());
  return list;
}

}  // namespace mlxgp
