// Beam searches sharing one batch (BeamBatch, searches.h): joined between steps, each prefilled alone,
// all rows decoded by one forward per step (the BatchEngine's beam batch).
#include <algorithm>
#include <optional>

#include <mlx/mlx.h>

#include "cache/prefill.h"
#include "core/fault.h"
#include "generation/beam/searches.h"
#include "generation/beam/search_state.h"
#include "mlxgp/batch_cache.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::beam {

struct BeamBatch::Search {
  int id;
  int prompt_length;
  GenerationConfig config;
  std::unique_ptr<BeamSearchState> state;
  mx::array logits;            // this search's next logits [num_beams, V]
  std::optional<Error> error;  // its own logits were refused: it ends at the next step with this error
};

// A search that failed on its own (its processors, its logits, its result): it ends with the error alone
// and the others go on, as a sampled request of the batch does (BatchEngine::read_request_tokens).
static GenerationResult failed_search(const Error& e) {
  GenerationResult r;
  r.error = e;
  return r;
}

BeamBatch::BeamBatch(Model& model, std::shared_ptr<const Tokenizer> tokenizer)
    : model_(model), tokenizer_(std::move(tokenizer)) {}

BeamBatch::~BeamBatch() = default;

int BeamBatch::rows() const {
  int n = 0;
  for (auto& s : searches_) n += s->state->num_beams();
  return n;
}

const GenerationConfig* BeamBatch::any_config() const {
  return searches_.empty() ? nullptr : &searches_.front()->config;
}

void BeamBatch::add(int id, const std::vector<int>& prompt_ids, const GenerationConfig& config,
                    const GeneratorOptions& options) {
  auto state = make_beam_search(model_, tokenizer_, config, options);
  mx::array logits = state->prefill(prompt_ids);
  append_rows(caches_, state->runner().take_caches());
  searches_.push_back(std::unique_ptr<Search>(
      new Search{id, static_cast<int>(prompt_ids.size()), config, std::move(state), std::move(logits)}));
}

void BeamBatch::keep(const std::vector<int>& rows) {
  if (rows.empty()) {
    caches_.clear();
  } else {
    keep_rows(caches_, rows);
  }
}

bool BeamBatch::remove(int id) {
  std::vector<int> rows;
  int base = 0;
  bool found = false;
  for (auto it = searches_.begin(); it != searches_.end();) {
    const int nb = (*it)->state->num_beams();
    if ((*it)->id == id) {
      found = true;
      it = searches_.erase(it);
    } else {
      for (int r = 0; r < nb; ++r) rows.push_back(base + r);
      ++it;
    }
    base += nb;
  }
  if (found) keep(rows);
  return found;
}

std::vector<std::pair<int, GenerationResult>> BeamBatch::step() {
  std::vector<std::pair<int, GenerationResult>> ended;
  std::vector<int> rows, tokens;
  int base = 0;
  for (auto it = searches_.begin(); it != searches_.end();) {
    auto& s = **it;
    const int nb = s.state->num_beams();
    // Processors that run the model themselves (guidance) see the search's own prompt length.
    model_.hooks().set_prompt_length(s.prompt_length);
    s.state->runner().mark_decoding();
    std::optional<GenerationResult> end;
    try {
      fault_point("batch.beam_step");
      if (s.error) throw *s.error;
      if (s.state->step(s.logits)) {
        for (int r : s.state->src_rows()) rows.push_back(base + r);
        tokens.insert(tokens.end(), s.state->new_tokens().begin(), s.state->new_tokens().end());
      } else {
        end = s.state->result();
      }
    } catch (const std::exception& e) {
      end = failed_search(as_error(e, "batch"));
    }
    base += nb;
    if (end) {
      ended.emplace_back(s.id, std::move(*end));
      it = searches_.erase(it);
    } else {
      ++it;
    }
  }
  keep(rows);
  if (searches_.empty()) return ended;
  // Every row is past its prompt: all positions are generated ones for position-aware hooks.
  model_.hooks().set_prompt_length(0);
  auto out =
      forward_and_quantize(model_, caches_, mx::array(tokens.data(), {static_cast<int>(tokens.size()), 1}, mx::int32),
                           1, cache_options_from(searches_.front()->config));
  out = mx::astype(mx::reshape(out, {out.shape(0), out.shape(-1)}), mx::float32);
  int row = 0;
  for (auto& s : searches_) {
    const int nb = s->state->num_beams();
    try {
      s->logits = s->state->runner().checked(mx::slice(out, {row, 0}, {row + nb, out.shape(-1)}));
    } catch (const std::exception& e) {
      s->error = as_error(e, "batch");
    }
    row += nb;
  }
  return ended;
}

}  // namespace mlxgp::beam
