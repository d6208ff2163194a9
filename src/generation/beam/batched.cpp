// Several prompts' beam searches sharing one batch: each search keeps its own state (beams, hypotheses,
// processors, stopping, sampler) and is prefilled alone; their num_beams rows share the KV caches
// (left-padded, batch_cache.h) and one forward per step. After a step, the rows are reordered (each
// search's src_rows, offset to its block) and the rows of finished searches are dropped with the same
// gather.
#include <mlx/mlx.h>

#include "cache/prefill.h"
#include "generation/beam/searches.h"
#include "generation/beam/search_state.h"
#include "mlxgp/batch_cache.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::beam {

std::vector<GenerationResult> batched_beam_search(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                                  const std::vector<std::vector<int>>& prompts,
                                                  const std::vector<GenerationConfig>& configs,
                                                  const GeneratorOptions& options) {
  if (prompts.size() != configs.size()) fail("generate", "one beam search config per prompt");
  const size_t n = prompts.size();
  std::vector<std::unique_ptr<BeamSearchState>> searches;
  std::vector<mx::array> logits;
  KVCacheList caches;
  for (size_t i = 0; i < n; ++i) {
    searches.push_back(make_beam_search(model, tokenizer, configs[i], options));
    logits.push_back(searches.back()->prefill(prompts[i]));
    append_rows(caches, searches.back()->runner().take_caches());
  }
  std::vector<size_t> active(n);  // searches still running, in row order
  for (size_t i = 0; i < n; ++i) active[i] = i;
  while (!active.empty()) {
    std::vector<size_t> still;
    std::vector<int> rows, tokens;
    int base = 0;
    for (size_t i : active) {
      auto& s = *searches[i];
      // Processors that run the model themselves (guidance) see the search's own prompt length.
      model.hooks().set_prompt_length(static_cast<int>(prompts[i].size()));
      s.runner().mark_decoding();
      if (s.step(logits[i])) {
        still.push_back(i);
        for (int r : s.src_rows()) rows.push_back(base + r);
        tokens.insert(tokens.end(), s.new_tokens().begin(), s.new_tokens().end());
      }
      base += s.num_beams();
    }
    active = std::move(still);
    if (active.empty()) break;
    keep_rows(caches, rows);
    // Every row is past its prompt: all positions are generated ones for position-aware hooks.
    model.hooks().set_prompt_length(0);
    auto out =
        forward_and_quantize(model, caches, mx::array(tokens.data(), {static_cast<int>(tokens.size()), 1}, mx::int32),
                             1, cache_options_from(configs[active.front()]));
    out = mx::astype(mx::reshape(out, {out.shape(0), out.shape(-1)}), mx::float32);
    int row = 0;
    for (size_t i : active) {
      const int nb = searches[i]->num_beams();
      logits[i] = searches[i]->runner().checked(mx::slice(out, {row, 0}, {row + nb, out.shape(-1)}));
      row += nb;
    }
  }
  std::vector<GenerationResult> results;
  for (auto& s : searches) results.push_back(s->result());
  return results;
}

}  // namespace mlxgp::beam
