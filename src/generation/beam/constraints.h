// Constraint states of constrained beam search, as transformers 4.56 beam_constraints.py defines them:
// PhrasalConstraint (one token sequence), DisjunctiveConstraint (alternatives, a trie) and
// ConstraintListState (which constraints are complete, in progress or pending, and the "bank" used
// to spread beams over levels of progress).
#pragma once

#include <memory>
#include <vector>

namespace mlxgp::beam {

class Constraint {
 public:
  // One alternative: phrasal; several: disjunctive (none may be a prefix of another).
  explicit Constraint(std::vector<std::vector<int>> alternatives);
  // The tokens that would advance it (empty when complete).
  std::vector<int> advance() const;
  bool does_advance(int token) const;
  // Returns {stepped, completed, reset}.
  struct Update {
    bool stepped, completed, reset;
  };
  Update update(int token);
  int remaining() const;
  bool completed() const { return completed_; }
  int seqlen() const { return seqlen_; }
  // copy(stateful): transformers' DisjunctiveConstraint.copy(stateful=True) shares its progress list
  // with the original (later updates of either show in both); kept, since that changes the banks.
  Constraint copy(bool stateful) const;

 private:
  std::vector<int> next_tokens(const std::vector<int>& prefix) const;
  std::shared_ptr<const std::vector<std::vector<int>>> alts_;
  bool disjunctive_;
  int seqlen_;
  int fulfilled_ = -1;                     // phrasal: index of the last matched token
  std::shared_ptr<std::vector<int>> seq_;  // disjunctive: tokens matched so far
  bool completed_ = false;
};

class ConstraintListState {
 public:
  explicit ConstraintListState(const std::vector<Constraint>& constraints);
  // Starts over and feeds `tokens` (stops once every constraint is met).
  void reset(const std::vector<int>& tokens);
  void add(int token);
  std::vector<int> advance() const;
  int bank() const;
  bool completed() const { return completed_; }
  ConstraintListState copy_stateful() const;

 private:
  const std::vector<Constraint>* base_;
  int max_seqlen_ = 0;
  std::vector<Constraint> complete_, pending_;
  std::unique_ptr<Constraint> inprogress_;
  bool completed_ = false;
};

}  // namespace mlxgp::beam
