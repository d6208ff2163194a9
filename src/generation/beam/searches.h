// The beam search variants behind beam_search() (beam_search.h), as step-wise searches
// (search_state.h), and the batch several prompts' searches share.
#pragma once

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/generate.h"
#include "mlxgp/kv_cache.h"

namespace mlxgp::beam {

class BeamSearchState;

// transformers 4.56 _group_beam_search with BeamSearchScorer (num_beam_groups > 1, diversity_penalty).
std::unique_ptr<BeamSearchState> make_group_beams(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                                  const GenerationConfig& config, const GeneratorOptions& options);

// transformers 4.56 _constrained_beam_search with ConstrainedBeamSearchScorer (force_words_ids).
std::unique_ptr<BeamSearchState> make_constrained_beams(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                                        const GenerationConfig& config,
                                                        const GeneratorOptions& options);

// Beam searches sharing one batch, step by step, that join and leave between steps (the BatchEngine's
// beam batch). Each search keeps its own state (beams, hypotheses, processors,
// stopping, sampler) and is prefilled alone; their num_beams rows share the KV caches (left-padded,
// batch_cache.h) and one forward per step. After a step the rows are reordered (each search's src_rows,
// offset to its block) and the rows of finished or removed searches are dropped with the same gather.
class BeamBatch {
 public:
  BeamBatch(Model& model, std::shared_ptr<const Tokenizer> tokenizer);
  ~BeamBatch();
  // Prefills a search (config resolved and validated; its cache kind must be the batch's, same_cache_kind)
  // and adds its rows; it takes its first step with the others at the next step().
  void add(int id, const std::vector<int>& prompt_ids, const GenerationConfig& config, const GeneratorOptions& options);
  // One step of every search and one forward of the rows still searching. Returns the searches that
  // ended, with their results (num_return_sequences hypotheses, best first).
  std::vector<std::pair<int, GenerationResult>> step();
  // Drops a search's rows (cancelled); false for unknown ids.
  bool remove(int id);
  bool empty() const { return searches_.empty(); }
  int rows() const;
  // The config of a search in the batch (the batch's cache kind), if any.
  const GenerationConfig* any_config() const;

 private:
  struct Search;
  void keep(const std::vector<int>& rows);
  Model& model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::vector<std::unique_ptr<Search>> searches_;  // in row order
  KVCacheList caches_;
};

}  // namespace mlxgp::beam
