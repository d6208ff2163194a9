// BeamProcessors: the processor pipeline split after sequence_bias, where group beam search subtracts
// its diversity penalty.
#include "generation/beam/beam_processors.h"

#include <cmath>
#include <limits>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/model.h"

namespace mx = mlx::core;

namespace mlxgp::beam {

BeamProcessors::BeamProcessors(Model& model, const GenerationConfig& config, const GeneratorOptions& options) {
  GenerationConfig rest = config;
  if (config.guidance_scale && *config.guidance_scale != 1.0) {
    // transformers 4.56 group beams call the processors once per group, so its one unconditional cache
    // takes every group's tokens in turn: nothing sound to match.
    if (config.num_beam_groups > 1) fail("generate", "guidance_scale cannot be combined with num_beam_groups > 1");
    // HF _get_logits_processor: guidance first, ahead of sequence_bias. A negative prompt is shared by
    // the beams (transformers needs it repeated to num_beams rows).
    pre_.add(make_classifier_free_guidance(*config.guidance_scale, model, options.negative_prompt_ids,
                                           config.kv_cache_dtype));
    guided_ = true;
  }
  rest.guidance_scale.reset();
  rest.force_words_ids.reset();  // constrained beam search handles it (HF ConstrainedBeamSearchScorer)
  // HF PrefixConstrainedLogitsProcessor(fn, max(num_beams, num_return_sequences)): the builder reads
  // num_return_sequences for the rows per batch entry.
  rest.num_return_sequences = std::max(config.num_beams, config.num_return_sequences);
  if (rest.sequence_bias) pre_.add(make_sequence_bias(*rest.sequence_bias));
  rest.sequence_bias.reset();
  ProcessorContext context;
  context.model = &model;
  context.logits_processors = options.logits_processors;
  context.prefix_allowed_tokens_fn = options.prefix_allowed_tokens_fn;
  context.tokenizer = options.tokenizer;
  context.dead_beams = true;
  // HF _get_logits_processor: inside beams the warpers keep len(eos) + 1 tokens (2 without EOS).
  context.min_tokens_to_keep =
      config.eos_token_id && !config.eos_token_id->empty() ? static_cast<int>(config.eos_token_id->size()) + 1 : 2;
  rest_ = build_logits_processors(rest, context);
}

void BeamProcessors::on_prompt(const mx::array& rows) {
  pre_.on_prompt(rows);
  rest_.on_prompt(rows);
}

void BeamProcessors::on_step(const std::vector<int>& tokens) {
  // Only guidance follows tokens: HF feeds it input_ids[:, -1:] of the running rows, whatever beam they
  // came from; the other processors read the ids.
  if (guided_) pre_.on_token(mx::array(tokens.data(), {static_cast<int>(tokens.size())}, mx::int32));
}

mx::array BeamProcessors::apply(const mx::array& scores, const mx::array& ids,
                                const std::optional<mx::array>& diversity) {
  mx::array out = pre_.empty() ? scores : pre_.apply(scores, ids);
  if (diversity) out = mx::subtract(out, *diversity);
  return rest_.empty() ? out : rest_.apply(out, ids);
}

void BeamProcessors::check_candidates(float best, bool have_hypotheses) {
  if (best > -std::numeric_limits<float>::infinity() || (have_hypotheses && !std::isnan(best))) return;
  pre_.raise_pending();
  rest_.raise_pending();
  fail("generate",
       "beam search has no continuation left: the processed scores mask every token of a beam group (a "
       "constraint against min_new_tokens, logit_bias, suppress_tokens or bad_words_ids), or hold NaN");
}

}  // namespace mlxgp::beam
