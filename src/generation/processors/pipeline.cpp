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
  LogitsProcessorList list;
  // (Non-warper processors such as repetition_penalty go here, before the warpers, in HF's order.)
  if (config.do_sample) {
    // min_tokens_to_keep is 1 outside beam search (HF).
    if (config.temperature != 1.0) list.add(make_temperature_warper(config.temperature));
    if (config.top_k != 0) list.add(make_top_k_warper(config.top_k, 1));
    if (config.top_p < 1.0) list.add(make_top_p_warper(config.top_p, 1));
  }
  return list;
}

}  // namespace mlxgp
