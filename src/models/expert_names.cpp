// Helpers of the architectures whose checkpoints hold stacked experts in a layout of their own (gpt_oss, llama4):
// model_names.h.
#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "models/model_names.h"

namespace mlxgp {

namespace mx = mlx::core;

mx::array pop_tensor(WeightMap& w, const std::string& name) {
  auto it = w.find(name);
  if (it == w.end()) fail("model", "missing tensor '" + name + "'");
  auto a = it->second;
  w.erase(it);
  return a;
}

void rename_prefix(WeightMap& w, const std::string& from, const std::string& to) {
  std::vector<std::string> names;
  for (auto& [name, a] : w)
    if (name.starts_with(from)) names.push_back(name);
  for (auto& n : names) w.insert_or_assign(to + n.substr(from.size()), pop_tensor(w, n));
}

void rename_infix(WeightMap& w, const std::string& from, const std::string& to) {
  std::vector<std::pair<std::string, std::string>> renames;
  for (auto& [name, a] : w)
    if (auto at = name.find(from); at != std::string::npos)
      renames.emplace_back(name, name.substr(0, at) + to + name.substr(at + from.size()));
  for (auto& [old_name, new_name] : renames) w.insert_or_assign(new_name, pop_tensor(w, old_name));
}

void refuse_quantized_switch(const WeightMap& w, const std::string& switch_prefix, const std::string& model_type) {
  for (const char* proj : {"gate_proj", "up_proj", "down_proj"})
    if (w.count(switch_prefix + proj + ".scales"))
      fail("model", "tensor '" + switch_prefix + proj + ".weight' is quantized: " + model_type +
                        " experts are written in transformers' layout from float weights only");
}

void split_fused_experts(WeightMap& w, const std::string& fused, const std::string& switch_prefix) {
  auto gu = pop_tensor(w, fused + "gate_up_proj"), down = pop_tensor(w, fused + "down_proj");
  if (gu.ndim() != 3 || gu.shape(1) % 2 != 0 || down.ndim() != 3)
    fail("model",
         "tensors '" + fused + "gate_up_proj' / 'down_proj' must be [experts, out, in] with gate and up halves");
  const int I = gu.shape(1) / 2;
  auto half = [&](int first) {
    return mx::contiguous(mx::slice(gu, {0, first, 0}, {gu.shape(0), first + I, gu.shape(2)}));
  };
  w.insert_or_assign(switch_prefix + "gate_proj.weight", half(0));
  w.insert_or_assign(switch_prefix + "up_proj.weight", half(I));
  w.insert_or_assign(switch_prefix + "down_proj.weight", down);
}

void fuse_switch_experts(WeightMap& w, const std::string& switch_prefix, const std::string& fused,
                         const std::string& model_type) {
  refuse_quantized_switch(w, switch_prefix, model_type);
  auto gate = pop_tensor(w, switch_prefix + "gate_proj.weight"), up = pop_tensor(w, switch_prefix + "up_proj.weight");
  w.insert_or_assign(fused + "gate_up_proj", mx::contiguous(mx::concatenate({gate, up}, 1)));
  w.insert_or_assign(fused + "down_proj", pop_tensor(w, switch_prefix + "down_proj.weight"));
}

}  // namespace mlxgp
