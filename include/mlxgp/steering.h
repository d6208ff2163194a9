// The hooks behind persona steering: residual-stream injection, a persona logit bias, activation
// capture, soft prompts, and steering-vector extraction (contrastive activation addition: the mean
// difference of residual activations between two prompt sets, Rimsky et al. 2023).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/hooks.h"
#include "mlxgp/model.h"

namespace mlxgp {

// A vector given directly, or by the name of an extra parameter looked up at every use (so
// `model["_persona_v"] = w` takes effect without rebuilding the hook).
class VectorSource {
 public:
  VectorSource(mlx::core::array vector) : vector_(std::move(vector)) {}  // NOLINT: implicit on purpose
  VectorSource(std::string param_key) : key_(std::move(param_key)) {}    // NOLINT
  VectorSource(const char* param_key) : key_(param_key) {}               // NOLINT
  // The vector as [hidden]; throws [hooks] on a missing key or a wrong shape.
  mlx::core::array resolve(Model& model) const;
  std::string describe() const;

 private:
  std::optional<mlx::core::array> vector_;
  std::string key_;
};

// Which positions a residual injection touches. A generation's prompt is what the Generator
// prefilled; outside a generation every position counts as prompt.
enum class HookPositions { All, Prompt, Generated };
// "all" | "prompt" | "generated"; throws [hooks] otherwise.
HookPositions parse_hook_positions(const std::string& text);

// Adds alpha * v to the residual stream after each of `layers` (0-based blocks; HF
// hidden_states[layer + 1], i.e. a forward hook on model.layers[layer] adding to its output).
class ResidualInjectionHook : public Hook {
 public:
  ResidualInjectionHook(std::vector<int> layers, VectorSource vector, double alpha,
                        HookPositions positions = HookPositions::All);
  bool wants(HookPoint point, int layer) const override;
  mlx::core::array apply(const HookSite& site, const mlx::core::array& x, Model& model) override;
  bool alters_prompt_states(int num_layers) const override;
  const std::vector<int>& layers() const { return layers_; }

 private:
  std::vector<int> layers_;
  VectorSource vector_;
  double alpha_;
  HookPositions positions_;
  std::optional<mlx::core::array> source_, delta_;  // the resolved vector and alpha * v for it
};

// Adds alpha * lm_head(v) to the logits: the persona vector's direct effect on the vocabulary.
// lm_head(v) is computed once per vector (and again when the extra parameter is reassigned).
class LogitBiasHook : public Hook {
 public:
  LogitBiasHook(VectorSource vector, double alpha);
  bool wants(HookPoint point, int) const override { return point == HookPoint::Logits; }
  mlx::core::array apply(const HookSite& site, const mlx::core::array& x, Model& model) override;

 private:
  VectorSource vector_;
  double alpha_;
  std::optional<mlx::core::array> source_, bias_;  // the vector the bias was computed from, and alpha * lm_head(v)
};

// Records the residual stream after `layers` on every forward: per layer, one array per call,
// [B, T, hidden] (All), [B, hidden] (Last: the final position) or [B, hidden] (Mean over positions).
class ActivationCaptureHook : public Hook {
 public:
  enum class Reduce { All, Last, Mean };
  ActivationCaptureHook(std::vector<int> layers, Reduce reduce = Reduce::Last);
  bool wants(HookPoint point, int layer) const override;
  mlx::core::array apply(const HookSite& site, const mlx::core::array& x, Model& model) override;
  bool alters_prompt_states(int) const override { return false; }  // it records, never changes
  // Throws [hooks] for a layer that is not captured.
  const std::vector<mlx::core::array>& captured(int layer) const;
  void clear() { captured_.clear(); }

 private:
  std::vector<int> layers_;
  Reduce reduce_;
  std::map<int, std::vector<mlx::core::array>> captured_;
};
// "last" | "mean" | "all"; throws [hooks] otherwise.
ActivationCaptureHook::Reduce parse_capture_reduce(const std::string& text);

// Prepends n_virtual learned embeddings (extra parameter `param_key`, [n_virtual, hidden]) to the
// input embeddings of the first forward of a sequence (cache offset 0). Later positions, and the
// KV caches, then include the virtual tokens, as transformers' generate(inputs_embeds=...) does.
class SoftPromptHook : public Hook {
 public:
  SoftPromptHook(int n_virtual, std::string param_key);
  bool wants(HookPoint point, int) const override { return point == HookPoint::Embeddings; }
  mlx::core::array apply(const HookSite& site, const mlx::core::array& x, Model& model) override;
  int n_virtual() const { return n_virtual_; }
  int added_positions() const override { return n_virtual_; }
  const std::string& param_key() const { return key_; }

 private:
  int n_virtual_;
  std::string key_;
};

// Checks a hook against a model (layer indices, vector sizes given directly) and adds it to the
// model's hooks; returns the handle. Throws [hooks] naming the problem.
int add_hook(Model& model, std::shared_ptr<Hook> hook);

// Residual activations after `layer` for each prompt (run one at a time, no KV cache kept), reduced
// to one vector per prompt: [N, hidden] float32.
mlx::core::array capture_activations(Model& model, const std::vector<std::vector<int>>& prompts, int layer,
                                     ActivationCaptureHook::Reduce reduce);

// mean(activations(positive)) - mean(activations(negative)) at `layer`: [hidden] float32.
mlx::core::array extract_steering_vector(Model& model, const std::vector<std::vector<int>>& positive,
                                         const std::vector<std::vector<int>>& negative, int layer,
                                         ActivationCaptureHook::Reduce reduce = ActivationCaptureHook::Reduce::Last);

}  // namespace mlxgp
