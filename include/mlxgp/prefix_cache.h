// Prompt-prefix reuse across requests (issue 16): a bounded LRU of the KV caches of token sequences a
// BatchEngine has finished (prompt + generated tokens), so the next turn of a chat, which re-sends its
// history, prefills only what is new. Modelled on mlx-lm's server LRUPromptCache (the cache is stored at
// the end of a generation; a lookup takes the entry with the longest common prefix, exact, shorter or
// longer, copies it and trims it to that prefix), bounded by bytes rather than by a count of entries.
#pragma once

#include <cstddef>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/kv_cache.h"

namespace mlxgp {

// One layer's stored keys and values of one sequence, [1, kv_heads, T, head_dim].
using LayerKV = std::pair<mlx::core::array, mlx::core::array>;

struct PrefixCacheStats {
  long long lookups = 0;           // admissions looked up (a request whose settings rule out reuse counts as a miss)
  long long hits = 0;              // lookups that reused at least one token
  long long tokens_reused = 0;     // prompt tokens taken from the cache instead of prefilled
  long long tokens_prefilled = 0;  // prompt tokens left to prefill after the lookups
  long long insertions = 0;        // sequences stored
  long long evictions = 0;         // entries dropped to stay within the byte budget
  std::size_t bytes = 0;           // held now (see PrefixCache::insert for tensor parallelism)
  std::size_t max_bytes = 0;       // the budget
  int entries = 0;
};

class PrefixCache {
 public:
  // `max_bytes` > 0: the sum of the stored keys' and values' nbytes never exceeds it.
  explicit PrefixCache(std::size_t max_bytes);

  struct Hit {
    int tokens = 0;      // prompt tokens the caches hold (0: a miss, `caches` empty)
    KVCacheList caches;  // fresh StandardKVCaches (one row) holding the prompt's first `tokens` tokens
  };
  // The stored entry of `identity` with the longest common prefix with `prompt` (the most recently used
  // among equals), copied and cut to that prefix, at most prompt.size() - 1 tokens: the last prompt
  // position is always computed, so the first token comes from a real forward. Counts the lookup and
  // makes the entry the most recently used.
  Hit lookup(const std::vector<int>& prompt, const std::string& identity);
  // Counts the lookup of a request whose settings rule out reuse (a miss that prefills `prompt_tokens`).
  void count_miss(int prompt_tokens);

  // Stores the keys and values of `tokens` (kv[layer], each [1, heads, tokens.size(), head_dim],
  // evaluated: copy_row), most recently used. Entries of the same identity whose tokens begin the new
  // ones are dropped (it serves every lookup they would); when a stored entry already begins with
  // `tokens` nothing is stored (that entry is touched instead). Then the least recently used entries
  // are evicted until the budget holds. An entry larger than the whole budget is not stored. Returns
  // whether it was stored. `whole_kv_heads` > 0 counts each layer's bytes as if it held that many heads:
  // a tensor-parallel rank holds its share of the heads but counts the whole model's, so every rank
  // evicts alike (an uneven split, e.g. 3 heads over 2 ranks, would otherwise evict at different times).
  // Throws [prefix-cache] on empty tokens or keys/values of the wrong shape.
  bool insert(std::vector<int> tokens, std::vector<LayerKV> kv, const std::string& identity, int whole_kv_heads = 0);

  PrefixCacheStats stats() const;
  void clear();

 private:
  struct Entry {
    std::vector<int> tokens;
    std::string identity;
    std::vector<LayerKV> kv;
    std::size_t bytes = 0;
  };
  mutable std::mutex m_;
  std::list<Entry> entries_;  // most recently used first
  PrefixCacheStats stats_;
};

// Copies of batch row `row`'s first `length` positions after its left padding, one LayerKV per layer,
// evaluated (they own their memory, not the batch's buffers); nullopt unless every cache is a
// StandardKVCache holding them (rotating and quantized caches are not stored: what they hold depends
// on how the tokens went in).
std::optional<std::vector<LayerKV>> copy_row(const KVCacheList& caches, int row, int length);

}  // namespace mlxgp
