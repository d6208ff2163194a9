#include "generation/core/sampler.h"

#include <random>

#include <mlx/mlx.h>
#include <mlx/random.h>

namespace mlxgp {

namespace {

uint64_t fresh_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

}  // namespace

Sampler::Sampler(const GenerationConfig& config)
    : sample_(config.do_sample), key_(mx::random::key(config.seed ? *config.seed : fresh_seed())) {}

mx::array Sampler::next_key() {
  auto [next, sub] = mx::random::split(key_);
  key_ = next;
  return sub;
}

mx::array Sampler::choose(const mx::array& scores) {
  auto t = sample_ ? mx::random::categorical(scores, -1, next_key()) : mx::argmax(scores, -1);
  return mx::astype(t, mx::int32);
}

}  // namespace mlxgp
