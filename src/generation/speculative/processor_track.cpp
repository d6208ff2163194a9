#include "generation/speculative/processor_track.h"

#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::speculative {

void ProcessorTrack::begin() {
  after_apply_.clear();
  pushed_ = 0;
  if (!committed_.empty()) work_ = committed_;  // clones every processor with its state
}

mx::array ProcessorTrack::apply(const mx::array& logits, const mx::array& ids) {
  if (committed_.empty()) return logits;
  auto scores = work_.apply(logits, ids);
  after_apply_.push_back(work_);
  return scores;
}

void ProcessorTrack::push(const mx::array& token) {
  ++pushed_;
  if (!committed_.empty()) work_.on_token(token);
}

void ProcessorTrack::commit(int accepted, const mx::array& final_token) {
  if (committed_.empty()) return;  // nothing to track (apply() passed the logits through)
  if (accepted < 0 || accepted > pushed_) fail("generate", "speculative: accepted more candidates than drafted");
  // The state after position `accepted` was processed has seen exactly the accepted candidates; when
  // every pushed candidate was accepted and no position after them was processed (the draft track), the
  // working pipeline is that state.
  if (accepted < static_cast<int>(after_apply_.size())) committed_ = std::move(after_apply_[accepted]);
  else committed_ = std::move(work_);
  committed_.on_token(final_token);
  after_apply_.clear();
}

}  // namespace mlxgp::speculative
