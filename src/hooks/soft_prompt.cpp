// SoftPromptHook: virtual-token embeddings prepended to a sequence's first forward.
#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/steering.h"

namespace mx = mlx::core;

namespace mlxgp {

SoftPromptHook::SoftPromptHook(int n_virtual, std::string param_key)
    : n_virtual_(n_virtual), key_(std::move(param_key)) {
  if (n_virtual_ < 1) fail("hooks", "a soft prompt needs at least one virtual token");
  if (key_.empty()) fail("hooks", "a soft prompt needs the name of its extra parameter");
}

mx::array SoftPromptHook::apply(const HookSite& site, const mx::array& x, Model& model) {
  if (site.offset != 0) return x;  // the virtual tokens are already in the KV cache
  auto p = model.extra_params().get(key_);
  const int hidden = model.config().hidden_size;
  if (p.ndim() != 2 || p.shape(0) != n_virtual_ || p.shape(1) != hidden)
    fail("hooks", "soft prompt '" + key_ + "' must have shape [" + std::to_string(n_virtual_) + ", " +
                      std::to_string(hidden) + "]");
  const int B = x.shape(0);
  auto virt = mx::broadcast_to(mx::astype(mx::reshape(p, {1, n_virtual_, hidden}), x.dtype()), {B, n_virtual_, hidden});
  return mx::concatenate({virt, x}, 1);
}

}  // namespace mlxgp
