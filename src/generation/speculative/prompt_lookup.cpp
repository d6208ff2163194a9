#include "generation/speculative/prompt_lookup.h"

#include <algorithm>

namespace mlxgp::speculative {

std::vector<int> prompt_lookup_candidates(const std::vector<int>& ids, int max_ngram, int num_tokens,
                                          const std::vector<int>& eos) {
  const int len = static_cast<int>(ids.size());
  for (int n = std::min(max_ngram, len - 1); n > 0; --n) {
    const int tail = len - n;  // where the last n-gram starts
    // Windows in order; the last window is the n-gram itself, which has no continuation.
    for (int start = 0; start + n <= len; ++start) {
      if (!std::equal(ids.begin() + start, ids.begin() + start + n, ids.begin() + tail)) continue;
      const int from = start + n;
      const int to = std::min(from + num_tokens, len);
      if (from >= to) continue;
      std::vector<int> out(ids.begin() + from, ids.begin() + to);
      auto hit = std::find_if(out.begin(), out.end(),
                              [&](int t) { return std::find(eos.begin(), eos.end(), t) != eos.end(); });
      out.erase(hit, out.end());
      // transformers returns no candidates (a plain step) when the first match starts with EOS.
      return out;
    }
  }
  return {};
}

}  // namespace mlxgp::speculative
