// Constraint / ConstraintListState: transformers 4.56 beam_constraints.py semantics, quirks included
// (a token that breaks an in-progress constraint is not tried on the pending ones; a broken
// constraint goes to the end of the pending list).
#include "generation/beam/constraints.h"

#include <algorithm>

namespace mlxgp::beam {

Constraint::Constraint(std::vector<std::vector<int>> alternatives)
    : alts_(std::make_shared<const std::vector<std::vector<int>>>(std::move(alternatives))),
      disjunctive_(alts_->size() > 1),
      seq_(std::make_shared<std::vector<int>>()) {
  seqlen_ = 0;
  for (auto& a : *alts_) seqlen_ = std::max(seqlen_, static_cast<int>(a.size()));
}

std::vector<int> Constraint::next_tokens(const std::vector<int>& prefix) const {
  // The trie's children of `prefix`, in insertion order (a Python dict).
  std::vector<int> out;
  for (auto& a : *alts_) {
    if (a.size() <= prefix.size() || !std::equal(prefix.begin(), prefix.end(), a.begin())) continue;
    if (std::find(out.begin(), out.end(), a[prefix.size()]) == out.end()) out.push_back(a[prefix.size()]);
  }
  return out;
}

std::vector<int> Constraint::advance() const {
  if (!disjunctive_) {
    if (completed_) return {};
    return {(*alts_)[0][fulfilled_ + 1]};
  }
  return next_tokens(*seq_);
}

bool Constraint::does_advance(int token) const {
  if (!disjunctive_) return !completed_ && token == (*alts_)[0][fulfilled_ + 1];
  auto next = next_tokens(*seq_);
  return std::find(next.begin(), next.end(), token) != next.end();
}

Constraint::Update Constraint::update(int token) {
  Update u{false, false, false};
  if (!disjunctive_) {
    if (does_advance(token)) {
      ++fulfilled_;
      u.stepped = true;
      u.completed = fulfilled_ == seqlen_ - 1;
      completed_ = u.completed;
    } else {
      u.reset = true;
      completed_ = false;
      fulfilled_ = 0;  // PhrasalConstraint.reset() (the broken constraint is replaced by a fresh copy)
    }
    return u;
  }
  if (does_advance(token)) {
    seq_->push_back(token);
    u.stepped = true;
  } else {
    u.reset = true;
    completed_ = false;
    seq_ = std::make_shared<std::vector<int>>();
  }
  u.completed = next_tokens(*seq_).empty();
  completed_ = u.completed;
  return u;
}

int Constraint::remaining() const {
  if (!disjunctive_) return seqlen_ - (fulfilled_ + 1);
  return completed_ ? 0 : seqlen_ - static_cast<int>(seq_->size());
}

Constraint Constraint::copy(bool stateful) const {
  Constraint c = *this;
  if (stateful) return c;  // disjunctive: seq_ stays shared, as in transformers
  c.fulfilled_ = -1;
  c.seq_ = std::make_shared<std::vector<int>>();
  c.completed_ = false;
  return c;
}

ConstraintListState::ConstraintListState(const std::vector<Constraint>& constraints) : base_(&constraints) {
  for (auto& c : constraints) max_seqlen_ = std::max(max_seqlen_, c.seqlen());
  reset({});
}

void ConstraintListState::reset(const std::vector<int>& tokens) {
  complete_.clear();
  inprogress_.reset();
  pending_.clear();
  for (auto& c : *base_) pending_.push_back(c.copy(false));
  completed_ = false;
  for (int t : tokens) {
    add(t);
    if (completed_) break;
  }
}

void ConstraintListState::add(int token) {
  if (completed_) return;
  if (inprogress_) {
    auto u = inprogress_->update(token);
    if (u.reset) {
      pending_.push_back(inprogress_->copy(false));
      inprogress_.reset();
    }
    if (u.completed) {
      // transformers appends the in-progress constraint (None after a reset in the same update; a
      // completed update never resets, so it is always set here).
      if (inprogress_) complete_.push_back(*inprogress_);
      inprogress_.reset();
      if (pending_.empty()) completed_ = true;
    }
    return;
  }
  for (size_t i = 0; i < pending_.size(); ++i) {
    if (!pending_[i].does_advance(token)) continue;
    auto u = pending_[i].update(token);
    if (u.completed) {
      complete_.push_back(pending_[i]);
      inprogress_.reset();
    }
    if (!u.completed && u.stepped) inprogress_ = std::make_unique<Constraint>(pending_[i]);
    if (u.completed || u.stepped) {
      pending_.erase(pending_.begin() + i);
      if (pending_.empty() && !inprogress_) completed_ = true;
    }
    break;  // one token advances one constraint at most
  }
}

std::vector<int> ConstraintListState::advance() const {
  std::vector<int> out;
  if (!inprogress_) {
    for (auto& c : pending_) {
      auto a = c.advance();
      out.insert(out.end(), a.begin(), a.end());
    }
  } else {
    out = inprogress_->advance();
  }
  return out;
}

int ConstraintListState::bank() const {
  int add = inprogress_ ? max_seqlen_ - inprogress_->remaining() : 0;
  return static_cast<int>(complete_.size()) * max_seqlen_ + add;
}

ConstraintListState ConstraintListState::copy_stateful() const {
  ConstraintListState s(*base_);
  s.complete_.clear();
  for (auto& c : complete_) s.complete_.push_back(c.copy(true));
  if (inprogress_) s.inprogress_ = std::make_unique<Constraint>(inprogress_->copy(true));
  s.pending_.clear();
  for (auto& c : pending_) s.pending_.push_back(c.copy(false));
  // transformers' copy leaves `completed` False.
  s.completed_ = false;
  return s;
}

}  // namespace mlxgp::beam
