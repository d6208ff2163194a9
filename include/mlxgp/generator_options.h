// The options of one generation beyond its GenerationConfig: prefill chunking, a saved prompt cache,
// memory tracing, and the C++ callables transformers' generate() takes as arguments (logits
// processors, prefix_allowed_tokens_fn, stopping criteria, negative_prompt_ids).
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "mlxgp/logits_processor.h"
#include "mlxgp/stopping.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp {

struct PromptCache;  // prompt_cache.h

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

}  // namespace mlxgp
