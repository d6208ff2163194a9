#include <algorithm>

#include "mlxgp/error.h"
#include "mlxgp/hooks.h"

namespace mx = mlx::core;

namespace mlxgp {

int HookList::add(std::shared_ptr<Hook> hook) {
  if (!hook) fail("hooks", "cannot add a null hook");
  items_.push_back({next_handle_, std::move(hook)});
  return next_handle_++;
}

void HookList::remove(int handle) {
  items_.erase(std::remove_if(items_.begin(), items_.end(), [&](const Item& i) { return i.handle == handle; }),
               items_.end());
}

bool HookList::wants(HookPoint point, int layer) const {
  for (auto& i : items_)
    if (i.hook->wants(point, layer)) return true;
  return false;
}

bool Hook::alters_prompt_states(int num_layers) const {
  if (wants(HookPoint::Embeddings, -1)) return true;
  for (int l = 0; l + 1 < num_layers; ++l)  // the last block's output reaches no cache
    if (wants(HookPoint::Residual, l)) return true;
  return false;
}

bool HookList::alter_prompt_states(int num_layers) const {
  for (auto& i : items_)
    if (i.hook->alters_prompt_states(num_layers)) return true;
  return false;
}

int HookList::added_positions() const {
  int n = 0;
  for (auto& i : items_) n += i.hook->added_positions();
  return n;
}

mx::array HookList::run(HookSite site, const mx::array& x, Model& model) const {
  mx::array out = x;
  for (auto& i : items_)
    if (i.hook->wants(site.point, site.layer)) out = i.hook->apply(site, out, model);
  return out;
}

}  // namespace mlxgp
