// BeamProcessors: the processor pipeline split around the one stateful processor that must follow
// the beams (presence/frequency penalty counts).
#include "generation/beam/beam_processors.h"

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/model.h"

namespace mlxgp::beam {

BeamProcessors::BeamProcessors(Model& model, const GenerationConfig& config, const GeneratorOptions& options) {
  if (config.guidance_scale && *config.guidance_scale != 1.0)
    fail("generate", "guidance_scale cannot be combined with num_beams > 1 (its unconditional KV cache does not "
                     "follow the beams)");
  // The HF processors up to the user's ones: the usual builder, with what comes later switched off.
  GenerationConfig head = config;
  head.presence_penalty = 0;
  head.frequency_penalty = 0;
  head.logit_bias.reset();
  head.force_words_ids.reset();  // constrained beam search handles it (HF ConstrainedBeamSearchScorer)
  head.do_sample = false;
  head.renormalize_logits = false;
  // HF PrefixConstrainedLogitsProcessor(fn, max(num_beams, num_return_sequences)): the builder reads
  // num_return_sequences for the rows per batch entry.
  head.num_return_sequences = std::max(config.num_beams, config.num_return_sequences);
  ProcessorContext context;
  context.model = &model;
  context.logits_processors = options.logits_processors;
  context.prefix_allowed_tokens_fn = options.prefix_allowed_tokens_fn;
  if (head.sequence_bias) pre_.add(make_sequence_bias(*head.sequence_bias));
  head.sequence_bias.reset();
  head_ = build_logits_processors(head, context);
  presence_ = static_cast<float>(config.presence_penalty);
  frequency_ = static_cast<float>(config.frequency_penalty);
  if (config.logit_bias && !config.logit_bias->empty()) tail_.add(make_logit_bias(*config.logit_bias));
  if (config.do_sample) {
    // HF _get_logits_processor: inside beams the warpers keep len(eos) + 1 tokens (2 without EOS), so a
    // non-EOS continuation always survives.
    const int keep = config.eos_token_id && !config.eos_token_id->empty()
                         ? static_cast<int>(config.eos_token_id->size()) + 1
                         : 2;
    if (config.temperature != 1.0) tail_.add(make_temperature_warper(config.temperature));
    if (config.top_k != 0) tail_.add(make_top_k_warper(config.top_k, keep));
    if (config.top_p < 1.0) tail_.add(make_top_p_warper(config.top_p, keep));
    if (config.min_p) tail_.add(make_min_p_warper(*config.min_p, keep));
    if (config.typical_p < 1.0) tail_.add(make_typical_warper(config.typical_p, keep));
    if (config.epsilon_cutoff > 0.0 && config.epsilon_cutoff < 1.0) tail_.add(make_epsilon_warper(config.epsilon_cutoff, keep));
    if (config.eta_cutoff > 0.0 && config.eta_cutoff < 1.0) tail_.add(make_eta_warper(config.eta_cutoff, keep));
  }
  if (config.renormalize_logits) tail_.add(make_renormalize());
}

void BeamProcessors::on_prompt(const mx::array& rows) {
  rows_ = rows.shape(0);
  pre_.on_prompt(rows);
  head_.on_prompt(rows);
  tail_.on_prompt(rows);
}

mx::array BeamProcessors::apply(const mx::array& scores, const mx::array& ids, int first,
                                const std::optional<mx::array>& diversity) {
  vocab_ = scores.shape(1);
  mx::array out = pre_.empty() ? scores : pre_.apply(scores, ids);
  if (diversity) out = mx::subtract(out, *diversity);
  if (!head_.empty()) out = head_.apply(out, ids);
  if ((presence_ != 0 || frequency_ != 0) && counts_) {
    const int r = scores.shape(0), v = scores.shape(1);
    auto c = (first == 0 && r == rows_) ? *counts_ : mx::slice(*counts_, {first, 0}, {first + r, v});
    // vLLM / OpenAI: logits -= frequency * count + presence * [count > 0], over generated tokens only.
    auto penalty = mx::where(mx::greater(c, mx::array(0.0f)),
                             mx::add(mx::multiply(c, mx::array(frequency_)), mx::array(presence_)), mx::array(0.0f));
    out = mx::subtract(out, penalty);
  }
  if (!tail_.empty()) out = tail_.apply(out, ids);
  return out;
}

void BeamProcessors::advance(const std::vector<int>& src, const std::vector<int>& tokens) {
  if (presence_ == 0 && frequency_ == 0) return;
  const int r = static_cast<int>(src.size());
  if (!counts_) counts_ = mx::zeros({r, vocab_}, mx::float32);
  mx::array idx(src.data(), {r}, mx::int32);
  mx::array tok(tokens.data(), {r, 1}, mx::int32);
  auto moved = mx::take(*counts_, idx, 0);
  counts_ = mx::scatter_add_axis(moved, tok, mx::ones({r, 1}, mx::float32), 1);
}

}  // namespace mlxgp::beam
