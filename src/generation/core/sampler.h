// Token selection, one per decoding loop: argmax (the first maximum, like torch.argmax), categorical
// draws from an RNG key seeded by config.seed (a fresh random seed without one), or llama.cpp's
// mirostat / mirostat v2 (config.mirostat), which truncates the distribution by its running target
// surprise mu (one per row, kept here) before the draw. Every draw splits the key, so a request draws
// the same tokens whatever else runs beside it.
#pragma once

#include <optional>

#include <mlx/array.h>

#include "mlxgp/generation_config.h"

namespace mlxgp {

namespace mx = mlx::core;

class Sampler {
 public:
  explicit Sampler(const GenerationConfig& config);
  // Scores [R, V] -> tokens [R] int32 (lazy): argmax per row, or one draw per row from one new key.
  // With mirostat, `sampled_from` (when given) receives the truncated scores the tokens were drawn from.
  mx::array choose(const mx::array& scores, mx::array* sampled_from = nullptr);
  // A new key for draws made elsewhere (beam sampling's Gumbel top-k, speculative acceptance).
  mx::array next_key();
  // A 32-bit seed drawn from the request's key (XTC's coins), evaluated now.
  uint32_t draw_seed();
  bool sampling() const { return sample_; }
  // Mirostat's mu per row after the last choose() (lazy), unset before the first step or without mirostat.
  const std::optional<mx::array>& mirostat_mu() const { return mu_; }

 private:
  mx::array mirostat_truncate(const mx::array& scores);

  bool sample_;
  mx::array key_;
  int mirostat_ = 0;
  float tau_ = 0, eta_ = 0;
  std::optional<mx::array> mu_;  // [R] float32, 2 * tau at the start (llama.cpp)
};

}  // namespace mlxgp
