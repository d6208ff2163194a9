// Saved prompt caches: the KV caches of a prompt prefix, written to a .safetensors file with the
// token ids they hold and the identity of the model that computed them, so a later generation whose
// prompt starts with those tokens prefills only the rest (mlx-lm's save_prompt_cache /
// load_prompt_cache, plus the model check mlx-lm leaves to the user).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mlxgp/cache_options.h"
#include "mlxgp/kv_cache.h"
#include "mlxgp/model.h"

namespace mlxgp {

struct PromptCache {
  std::vector<int> token_ids;  // the prefix the caches hold (one batch row)
  KVCacheList caches;          // one StandardKVCache per layer, offset == token_ids.size()
  std::string model_identity;  // model_identity() of the model that computed them
};

// A string naming the model's architecture, shapes, activation dtype and a digest of its norm
// weights and LoRA adapters: two checkpoints (dtypes, adapters) that would give different caches give
// different identities. Hooks are not part of it: see check_prompt_cache_use().
std::string model_identity(Model& model);

// Prefills `token_ids` into fresh standard caches, in chunks of `chunk_size` tokens (the Generator's
// prefill_chunk_size, so the cached positions match a generation without the cache). Throws
// [prompt-cache] on an empty prompt, ids outside the vocabulary, or hooks that change prompt positions.
PromptCache make_prompt_cache(Model& model, const std::vector<int>& token_ids, int chunk_size = 512);

// Atomic write (safetensors_io.h): tensors "token_ids" and "layers.<i>.keys" / "layers.<i>.values",
// metadata format/version/cache_type/model_identity. Throws [prompt-cache].
void save_prompt_cache(const std::string& path, const PromptCache& cache);

// Reads and validates a saved cache (finite keys and values) and checks that it belongs to `model`. Throws
// [safetensors] for an unreadable file and [prompt-cache] for one that is not a prompt cache, is inconsistent, or was
// made by another model.
PromptCache load_prompt_cache(const std::string& path, Model& model);

// Throws [prompt-cache] unless `cache` can serve a generation by `model` as it is now: the same
// identity (adapters included), and no hook that changes prompt positions (hooks.h
// alter_prompt_states). The Generator and the BatchEngine call it for GeneratorOptions::prompt_cache.
void check_prompt_cache_use(const PromptCache& cache, Model& model);

// Throws [prompt-cache] unless a generation with these cache options computes the cached positions as
// `cache` holds them: the same KV cache dtype (its positions were rounded in it), no rotating cache (the
// saved one is standard), and with kv_bits no quantization before the cached positions end
// (quantized_kv_start >= their number; a generation quantizes them as it goes, so later positions see
// other keys).
void check_prompt_cache_options(const PromptCache& cache, const CacheOptions& options);

// Copies of the caches, for one generation (the PromptCache stays reusable).
KVCacheList clone_caches(const PromptCache& cache);

// Throws [prompt-cache] unless `prompt_ids` starts with the cached tokens.
void check_prompt_prefix(const PromptCache& cache, const std::vector<int>& prompt_ids);

}  // namespace mlxgp
