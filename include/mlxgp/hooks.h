// Hooks: user code that sees, and may replace, arrays inside every forward of a model. They are
// attached to the Model (Model::hooks()), so every decoding strategy (greedy, sampling, beams,
// speculative) and both prefill and decode run them without knowing about them.
//
// Hook points, in the order a forward reaches them:
//   Embeddings   the input embeddings [B, T, hidden] (a hook may change T: soft prompts prepend)
//   Residual     the residual stream after block `layer` [B, T, hidden] (HF hidden_states[layer + 1])
//   FinalHidden  the final-normed hidden state before the LM head [B, T, hidden]
//   Logits       the logits [B, rows, vocab] float32 (rows: the positions whose logits are computed)
// Several hooks at one point run in the order they were added, each seeing the previous one's output.
#pragma once

#include <memory>
#include <vector>

#include <mlx/array.h>

namespace mlxgp {

class Model;

enum class HookPoint { Embeddings, Residual, FinalHidden, Logits };

struct HookSite {
  HookPoint point = HookPoint::Embeddings;
  int layer = -1;  // Residual: the block (0-based) whose output this is; -1 at the other points
  int offset = 0;  // absolute position of the first row of the array (the KV cache offset)
  // Positions of the prompt being generated from: its tokens (set by the Generator through HookList) and
  // the positions hooks put before them (a soft prompt's, Hook::added_positions), as `offset` counts them;
  // -1 outside a generation, where every position counts as prompt.
  int prompt_length = -1;
};

class Hook {
 public:
  virtual ~Hook() = default;
  // Whether apply() should run at this point (checked before any work, so idle points cost nothing).
  virtual bool wants(HookPoint point, int layer) const = 0;
  // Returns the replacement for `x` (or `x` itself). Runs lazily inside MLX's graph: no host syncs.
  virtual mlx::core::array apply(const HookSite& site, const mlx::core::array& x, Model& model) = 0;
  // Whether this hook may change the keys and values of prompt positions in a model of `num_layers`
  // blocks: a saved prompt cache holds them as computed without hooks. By default, any hook at the
  // embeddings or on the residual stream of a block whose output another block reads.
  virtual bool alters_prompt_states(int num_layers) const;
  // Positions this hook puts before the prompt (a soft prompt's virtual tokens): they take room in the
  // model's context like the prompt's own.
  virtual int added_positions() const { return 0; }
};

class HookList {
 public:
  // Adds a hook after the existing ones; returns a handle for remove().
  int add(std::shared_ptr<Hook> hook);
  void remove(int handle);
  void clear() { items_.clear(); }
  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }

  bool wants(HookPoint point, int layer = -1) const;
  // Whether any hook alters_prompt_states().
  bool alter_prompt_states(int num_layers) const;
  // The positions every hook adds before the prompt (Hook::added_positions).
  int added_positions() const;
  // Runs the hooks that want this point, in order.
  mlx::core::array run(HookSite site, const mlx::core::array& x, Model& model) const;

  // The Generator sets the prompt's token count for the duration of a generation (-1 clears it).
  void set_prompt_length(int n) { prompt_length_ = n; }
  // The prompt's positions (HookSite::prompt_length): its tokens and the positions hooks add before them.
  // Counting tokens only, a soft prompt's 4 virtual tokens made the prompt's last 4 "generated".
  int prompt_length() const { return prompt_length_ < 0 ? -1 : prompt_length_ + added_positions(); }

 private:
  struct Item {
    int handle;
    std::shared_ptr<Hook> hook;
  };
  std::vector<Item> items_;
  int next_handle_ = 1;
  int prompt_length_ = -1;
};

}  // namespace mlxgp
