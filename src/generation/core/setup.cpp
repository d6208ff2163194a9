#include "generation/core/setup.h"

#include "mlxgp/distributed.h"
#include "mlxgp/error.h"
#include "mlxgp/logits_processor.h"
#include "mlxgp/model.h"

namespace mlxgp {

GenerationConfig with_model_defaults(GenerationConfig config, const ModelConfig& model_config,
                                     const Tokenizer* tokenizer) {
  if (!config.eos_token_id) {
    if (!model_config.eos_token_id.empty()) config.eos_token_id = model_config.eos_token_id;
    else if (tokenizer && tokenizer->eos_token_id()) config.eos_token_id = std::vector<int>{*tokenizer->eos_token_id()};
  }
  if (!config.bos_token_id)
    config.bos_token_id = model_config.bos_token_id ? model_config.bos_token_id
                          : tokenizer               ? tokenizer->bos_token_id()
                                                    : std::nullopt;
  if (!config.pad_token_id)
    config.pad_token_id = model_config.pad_token_id ? model_config.pad_token_id
                          : tokenizer               ? tokenizer->pad_token_id()
                                                    : std::nullopt;
  return config;
}

CacheOptions cache_options_from(const GenerationConfig& config) {
  CacheOptions o;
  o.max_kv_size = config.max_kv_size;
  o.kv_keep = config.kv_keep;
  o.kv_bits = config.kv_bits;
  o.kv_group_size = config.kv_group_size;
  o.quantized_kv_start = config.quantized_kv_start;
  o.kv_cache_dtype = config.kv_cache_dtype;
  return o;
}

PreparedGeneration prepare_generation(const Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                      const GenerationConfig& config, GeneratorOptions options) {
  if (!options.tokenizer) options.tokenizer = tokenizer;
  PreparedGeneration p{with_model_defaults(config, model.config(), tokenizer.get()), std::move(options)};
  validate(p.config);
  // Each rank of a sharded model would stop on its own clock, and a rank that stops early leaves the
  // others waiting in a collective.
  if (p.config.max_time && model.tensor_parallel_group())
    fail("generate",
         "max_time cannot be used on a tensor-parallel (sharded) model: each rank would stop on its own clock");
  // HF generate(negative_prompt_ids=...) feeds only classifier-free guidance: without it, refused, not ignored.
  if (p.options.negative_prompt_ids && (!p.config.guidance_scale || *p.config.guidance_scale == 1.0))
    fail("generate", "a negative prompt needs guidance_scale other than 1 (classifier-free guidance)");
  // Beam search and speculative decoding prefill their own caches.
  if (p.options.prompt_cache &&
      (p.config.num_beams > 1 || p.config.use_speculative || p.config.prompt_lookup_num_tokens))
    fail("generate",
         "a prompt cache works with greedy and sampled generation only (not beams or speculative decoding)");
  return p;
}

void agree_missing_seeds(const Model& model, std::vector<GenerationConfig>& configs) {
  auto group = model.tensor_parallel_group();
  if (!group) return;
  int missing = 0;
  for (auto& c : configs) missing += !c.seed;
  if (missing == 0) return;
  // The collective runs even where only some ranks would miss a seed: the ranks' configs are the same.
  const auto seeds = agreed_random_seeds(*group, missing);
  int next = 0;
  for (auto& c : configs)
    if (!c.seed) c.seed = seeds[next++];
}

StoppingCriteria stopping_criteria(const GenerationConfig& config, const GeneratorOptions& options) {
  StoppingCriteria stop;
  if (config.eos_token_id) stop.eos = *config.eos_token_id;
  stop.max_time = config.max_time;
  if (config.stop_strings) {
    if (!options.tokenizer) fail("generate", "stop_strings need the model's tokenizer");
    stop.stop_strings.emplace(*config.stop_strings, options.tokenizer);
  }
  stop.callback = options.stop_callback;
  return stop;
}

void check_processor_vocabulary(Model& model, const GenerationConfig& config, const GeneratorOptions& options) {
  ProcessorContext context;
  context.model = &model;
  context.negative_prompt_ids = options.negative_prompt_ids;
  context.tokenizer = options.tokenizer;
  build_logits_processors(config, context).check_vocabulary(model.config().vocab_size);
}

}  // namespace mlxgp
