// Token selection, one per decoding loop: argmax (the first maximum, like torch.argmax) or categorical
// draws from an RNG key seeded by config.seed (a fresh random seed without one). Every draw splits the
// key, so a request draws the same tokens whatever else runs beside it.
#pragma once

#include <mlx/array.h>

#include "mlxgp/generation_config.h"

namespace mlxgp {

namespace mx = mlx::core;

class Sampler {
 public:
  explicit Sampler(const GenerationConfig& config);
  // Scores [R, V] -> tokens [R] int32 (lazy): argmax per row, or one draw per row from one new key.
  mx::array choose(const mx::array& scores);
  // A new key for draws made elsewhere (beam sampling's Gumbel top-k, speculative acceptance).
  mx::array next_key();
  bool sampling() const { return sample_; }

 private:
  bool sample_;
  mx::array key_;
};

}  // namespace mlxgp
