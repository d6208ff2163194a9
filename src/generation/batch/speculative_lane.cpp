// SpeculativeLane: speculative_lane.h.
#include "generation/batch/speculative_lane.h"

#include "core/fault.h"
#include "generation/core/decode_group.h"
#include "generation/speculative/speculative_run.h"
#include "mlxgp/error.h"

namespace mlxgp {

struct SpeculativeLane::Run {
  int id;
  std::vector<int> prompt;
  GenerationConfig config;
  GeneratorOptions options;
  RowTokenCallback on_token;
  std::shared_ptr<Model> draft;
  std::unique_ptr<speculative::SpeculativeRun> run;
  std::unique_ptr<TextStreams> texts;
  std::vector<int> streamed;  // the tokens sent to on_token, for a run that fails later
};

SpeculativeLane::SpeculativeLane(Model& model, std::shared_ptr<const Tokenizer> tokenizer)
    : model_(model), tokenizer_(std::move(tokenizer)) {}

SpeculativeLane::~SpeculativeLane() = default;

void SpeculativeLane::add(int id, std::vector<int> prompt, GenerationConfig config, GeneratorOptions options,
                          RowTokenCallback on_token, std::shared_ptr<Model> draft) {
  auto r = std::unique_ptr<Run>(new Run{id,
                                        std::move(prompt),
                                        std::move(config),
                                        std::move(options),
                                        std::move(on_token),
                                        std::move(draft),
                                        nullptr,
                                        nullptr,
                                        {}});
  r->run = std::make_unique<speculative::SpeculativeRun>(model_, r->draft, r->config, r->options);
  r->run->check(r->prompt);  // refused now, not when it would start
  waiting_.push_back(std::move(r));
}

// A run that failed on its own (its prefill, its processors, its logits): its prompt, the tokens it
// streamed, and the error; the other requests of the engine go on.
static GenerationResult failed_run(const std::vector<int>& prompt, const std::vector<int>& streamed, const Error& e) {
  GenerationResult r;
  r.prompt_token_ids = prompt;
  r.stats.prompt_tokens = static_cast<int>(prompt.size());
  r.sequences.resize(1);
  r.sequences[0].token_ids = streamed;
  r.sequences[0].finish_reason = FinishReason::Cancelled;
  r.error = e;
  return r;
}

std::vector<std::pair<int, GenerationResult>> SpeculativeLane::step(int free_rows, bool alone) {
  std::vector<std::pair<int, GenerationResult>> ended;
  while (!waiting_.empty() && (free_rows > 0 || (alone && running_.empty()))) {
    auto r = std::move(waiting_.front());
    waiting_.pop_front();
    r->texts = std::make_unique<TextStreams>(r->options.tokenizer ? r->options.tokenizer : tokenizer_, 1);
    try {
      r->run->start(r->prompt);
    } catch (const std::exception& e) {  // its own prefill: it ends alone
      ended.emplace_back(r->id, failed_run(r->prompt, {}, as_error(e, "batch")));
      continue;
    }
    running_.push_back(std::move(r));
    --free_rows;
  }
  for (auto it = running_.begin(); it != running_.end();) {
    Run& r = **it;
    // Position-aware hooks see the run's own prompt, as in its solo run.
    model_.hooks().set_prompt_length(static_cast<int>(r.prompt.size()));
    try {
      fault_point("batch.speculative_round");
      const bool done = r.run->next_round([&](int token) {
        r.streamed.push_back(token);
        std::string piece = r.texts->push(0, token, r.run->finish_reason());
        if (r.on_token) r.on_token(0, token, piece);
      });
      if (!done) {
        ++it;
        continue;
      }
      ended.emplace_back(r.id, speculative::result_of(*r.run, r.prompt, *r.texts));
    } catch (const std::exception& e) {  // a round runs only this request's own forwards
      ended.emplace_back(r.id, failed_run(r.prompt, r.streamed, as_error(e, "batch")));
    }
    it = running_.erase(it);
  }
  return ended;
}

std::optional<GenerationResult> SpeculativeLane::cancel(int id) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if ((*it)->id != id) continue;
    GenerationResult r;
    r.prompt_token_ids = (*it)->prompt;
    r.stats.prompt_tokens = static_cast<int>((*it)->prompt.size());
    r.sequences.resize(1);
    r.sequences[0].finish_reason = FinishReason::Cancelled;
    waiting_.erase(it);
    return r;
  }
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if ((*it)->id != id) continue;
    (*it)->run->cancel();
    auto r = speculative::result_of(*(*it)->run, (*it)->prompt, *(*it)->texts);
    running_.erase(it);
    return r;
  }
  return std::nullopt;
}

}  // namespace mlxgp
