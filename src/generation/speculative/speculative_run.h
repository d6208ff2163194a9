// One speculative or prompt-lookup generation, round by round: speculative_generate() runs one to the
// end, and the BatchEngine steps one round per engine step beside its batched rows.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "mlxgp/generate.h"

namespace mlxgp {

class TextStreams;

namespace speculative {

class SpeculativeRun {
 public:
  // `draft`: the draft model (null: prompt lookup). `config` resolved and validated.
  SpeculativeRun(Model& target, std::shared_ptr<Model> draft, const GenerationConfig& config,
                 const GeneratorOptions& options);
  ~SpeculativeRun();
  // Refuses a prompt the run cannot take (vocabulary, context, budget; a rotating cache that would wrap).
  void check(const std::vector<int>& prompt);
  // Checks the prompt and prefills it less its last token.
  void start(const std::vector<int>& prompt);
  // One round: draft, verify with one target forward, emit the kept tokens. True when the run is over.
  bool next_round(const std::function<void(int)>& emit);
  // Ends the run here (its result keeps the tokens so far, FinishReason::Cancelled).
  void cancel();
  const std::vector<int>& generated() const;
  FinishReason finish_reason() const;

 private:
  friend GenerationResult result_of(const SpeculativeRun&, const std::vector<int>&, TextStreams&);
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// The draft a run uses: `draft` if given, else the config's (draft_layers: the target's first layers;
// draft_model: loaded); null for prompt lookup. Throws [config] for what speculative decoding cannot run
// (guidance, a draft of another vocabulary) and [generate] for a bad prefill_chunk_size.
std::shared_ptr<Model> resolve_draft(Model& model, const GenerationConfig& config, const GeneratorOptions& options,
                                     std::shared_ptr<Model> draft);

// The run's result: one sequence (texts from `texts`, row 0), its outputs, statistics and speculative
// figures.
GenerationResult result_of(const SpeculativeRun& run, const std::vector<int>& prompt, TextStreams& texts);

}  // namespace speculative
}  // namespace mlxgp
