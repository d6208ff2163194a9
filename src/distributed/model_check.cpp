// What check_same_on_all_ranks compares for a model, and rank 0's values sent to every rank.
#include <algorithm>
#include <sstream>
#include <vector>

#include <mlx/mlx.h>

#include "mlxgp/distributed.h"

namespace mx = mlx::core;

namespace mlxgp {

std::string model_fingerprint(Model& model) {
  const auto& c = model.config();
  std::ostringstream o;
  o << c.model_type << " layers=" << c.num_hidden_layers << " hidden=" << c.hidden_size
    << " heads=" << c.num_attention_heads << "/" << c.num_key_value_heads << " head_dim=" << c.head_dim
    << " inter=" << c.intermediate_size << " vocab=" << c.vocab_size << " theta=" << c.rope_theta
    << " eps=" << c.rms_norm_eps << " tied=" << c.tie_word_embeddings << "\n";
  std::vector<std::string> names;
  for (auto& [name, w] : model.parameters()) names.push_back(name);
  std::sort(names.begin(), names.end());
  for (auto& n : names) {
    const auto& w = model.parameters().at(n);
    o << n << " " << w.dtype() << " [";
    for (int d : w.shape()) o << d << ",";
    o << "]\n";
  }
  return o.str();
}

double model_checksum(Model& model) { return weights_checksum(model.parameters()); }

double weights_checksum(const WeightMap& weights) {
  std::vector<mx::array> parts;
  for (auto& [name, w] : weights) parts.push_back(mx::sum(mx::abs(mx::astype(w, mx::float32))));
  if (parts.empty()) return 0.0;
  auto total = mx::sum(mx::stack(parts));
  mx::eval(total);
  return total.item<float>();
}

WeightMap broadcast_from_rank0(const DistGroup& group, const WeightMap& values) {
  if (group.size() == 1) return values;
  // all_sum of rank 0's values and zeros elsewhere is rank 0's values, bit for bit (x + 0 == x).
  WeightMap out;
  std::vector<mx::array> to_eval;
  for (auto& [name, v] : values) {
    auto mine = group.rank() == 0 ? v : mx::zeros_like(v);
    auto s = mx::distributed::all_sum(mine, group);
    out.insert_or_assign(name, s);
    to_eval.push_back(s);
  }
  mx::eval(to_eval);
  return out;
}

std::string broadcast_text_from_rank0(const DistGroup& group, const std::string& text) {
  if (group.size() == 1) return text;
  const bool root = group.rank() == 0;
  auto length = mx::distributed::all_sum(mx::array({root ? static_cast<int32_t>(text.size()) : 0}), group);
  mx::eval(length);
  const int n = length.item<int32_t>();
  if (n == 0) return {};
  std::vector<int32_t> bytes(n, 0);  // int32 per byte: every backend sums int32
  if (root)
    for (int i = 0; i < n; ++i) bytes[i] = static_cast<unsigned char>(text[i]);
  auto all = mx::distributed::all_sum(mx::array(bytes.data(), {n}, mx::int32), group);
  mx::eval(all);
  std::string out(n, '\0');
  const int32_t* d = all.data<int32_t>();
  for (int i = 0; i < n; ++i) out[i] = static_cast<char>(d[i]);
  return out;
}

void shard_model(Model& model, const DistGroup& group) { model.shard(group); }

}  // namespace mlxgp
