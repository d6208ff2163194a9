// PrefixCache: the byte-bounded LRU of finished sequences' KV caches behind BatchEngine prefix reuse.
#include "mlxgp/prefix_cache.h"

#include <algorithm>
#include <string>

#include <mlx/mlx.h>

#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

// How many leading tokens `a` and `b` share.
int common_prefix(const std::vector<int>& a, const std::vector<int>& b) {
  const size_t n = std::min(a.size(), b.size());
  return static_cast<int>(std::mismatch(a.begin(), a.begin() + n, b.begin()).first - a.begin());
}

bool begins_with(const std::vector<int>& seq, const std::vector<int>& prefix) {
  return prefix.size() <= seq.size() && common_prefix(seq, prefix) == static_cast<int>(prefix.size());
}

}  // namespace

PrefixCache::PrefixCache(std::size_t max_bytes) {
  if (max_bytes == 0) fail("prefix-cache", "the byte budget must be > 0");
  stats_.max_bytes = max_bytes;
}

PrefixCache::Hit PrefixCache::lookup(const std::vector<int>& prompt, const std::string& identity) {
  std::lock_guard<std::mutex> lk(m_);
  const int n = static_cast<int>(prompt.size());
  ++stats_.lookups;
  auto best = entries_.end();
  int best_len = 0;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->identity != identity) continue;
    const int len = common_prefix(it->tokens, prompt);
    if (len > best_len) {  // ties: the first, most recently used
      best = it;
      best_len = len;
    }
  }
  // The last prompt position must be computed: its logits choose the first token (mlx-lm's
  // fetch_nearest_cache cuts a longer entry to len(tokens) - 1 for the same reason).
  best_len = std::min(best_len, n - 1);
  Hit hit;
  if (best == entries_.end() || best_len <= 0) {
    stats_.tokens_prefilled += n;
    return hit;
  }
  entries_.splice(entries_.begin(), entries_, best);
  for (auto& [k, v] : best->kv) {
    // A fresh cache with its own buffer (the default growth step), so decoding after it grows and writes
    // as after a prefill and the stored entry is never written through.
    auto c = std::make_unique<StandardKVCache>();
    auto cut = [&](const mx::array& a) { return mx::slice(a, {0, 0, 0, 0}, {1, a.shape(1), best_len, a.shape(3)}); };
    c->update(cut(k), cut(v));
    hit.caches.push_back(std::move(c));
  }
  hit.tokens = best_len;
  ++stats_.hits;
  stats_.tokens_reused += best_len;
  stats_.tokens_prefilled += n - best_len;
  return hit;
}

void PrefixCache::count_miss(int prompt_tokens) {
  std::lock_guard<std::mutex> lk(m_);
  ++stats_.lookups;
  stats_.tokens_prefilled += prompt_tokens;
}

bool PrefixCache::insert(std::vector<int> tokens, std::vector<LayerKV> kv, const std::string& identity,
                         int whole_kv_heads) {
  if (tokens.empty()) fail("prefix-cache", "cannot store an empty sequence");
  if (kv.empty()) fail("prefix-cache", "cannot store a sequence without layers");
  const int t = static_cast<int>(tokens.size());
  std::size_t bytes = 0;
  for (auto& [k, v] : kv) {
    if (k.ndim() != 4 || k.shape(0) != 1 || k.shape(2) != t || v.shape() != k.shape())
      fail("prefix-cache",
           "keys/values must be [1, heads, " + std::to_string(t) + ", head_dim] for " + std::to_string(t) + " tokens");
    for (const mx::array* a : {&k, &v})
      bytes += whole_kv_heads > 0 ? a->nbytes() / a->shape(1) * whole_kv_heads : a->nbytes();
  }
  std::lock_guard<std::mutex> lk(m_);
  if (bytes > stats_.max_bytes) return false;
  for (auto it = entries_.begin(); it != entries_.end(); ++it)
    if (it->identity == identity && begins_with(it->tokens, tokens)) {
      entries_.splice(entries_.begin(), entries_, it);  // already covered: touch it
      return false;
    }
  // Entries the new one extends serve no lookup it does not serve at least as well.
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->identity == identity && begins_with(tokens, it->tokens)) {
      stats_.bytes -= it->bytes;
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  entries_.push_front({std::move(tokens), identity, std::move(kv), bytes});
  stats_.bytes += bytes;
  ++stats_.insertions;
  while (stats_.bytes > stats_.max_bytes) {
    stats_.bytes -= entries_.back().bytes;
    entries_.pop_back();
    ++stats_.evictions;
  }
  return true;
}

PrefixCacheStats PrefixCache::stats() const {
  std::lock_guard<std::mutex> lk(m_);
  PrefixCacheStats s = stats_;
  s.entries = static_cast<int>(entries_.size());
  return s;
}

void PrefixCache::clear() {
  std::lock_guard<std::mutex> lk(m_);
  entries_.clear();
  stats_.bytes = 0;
}

std::optional<std::vector<LayerKV>> copy_row(const KVCacheList& caches, int row, int length) {
  if (caches.empty() || length <= 0) return std::nullopt;
  std::vector<LayerKV> out;
  std::vector<mx::array> all;
  for (auto& c : caches) {
    auto* s = dynamic_cast<const StandardKVCache*>(c.get());
    if (!s) return std::nullopt;
    if (row < 0 || row >= s->rows()) return std::nullopt;
    const int pad = s->left_padding().empty() ? 0 : s->left_padding().at(row);
    if (pad + length > s->offset()) return std::nullopt;
    // Copies, so the entry keeps no batch buffer alive (evaluated below, before the batch moves on).
    auto kv = s->copy_positions(row, pad, length);
    out.emplace_back(kv.first, kv.second);
    all.insert(all.end(), {out.back().first, out.back().second});
  }
  mx::eval(all);
  return out;
}

}  // namespace mlxgp
