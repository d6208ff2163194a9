#include "models/shard.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include <mlx/mlx.h>

#include "kernels/ggml_blocks.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp::shard {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The leaf names a projection's tensors carry; longest first, so ".lora_A.weight" is not read as ".weight".
const char* const kLeaves[] = {".lora_A.weight", ".lora_B.weight", ".lora_scale", ".ggml_type",
                               ".weight",        ".scales",        ".biases",     ".bias"};

// How a projection is split: by output rows (one or more ranges of output features, concatenated:
// phi3's fused [q; k; v] and [gate; up]) or by input columns (one range of `full_in` features).
struct Role {
  enum class Kind { Rows, Cols } kind = Kind::Rows;
  std::vector<Range> ranges;
  int full_in = 0;
};

Range scaled(Range r, int unit, int offset = 0) { return {offset + r.begin * unit, offset + r.end * unit}; }

// `norm_dim`: a 1-D weight's length; `norm_heads`: a 2-D norm weight's rows (cohere's per-head q / k norms).
std::optional<Role> role_of(const std::string& module, const ModelConfig& c, const Plan& p, int norm_dim,
                            int norm_heads, bool mixtral_names) {
  using K = Role::Kind;
  const int hd = c.head_dim, Q = c.num_attention_heads * hd, KV = c.num_key_value_heads * hd;
  const Range q = scaled(p.q_heads, hd), kv = scaled(p.kv_heads, hd);
  const int I = c.intermediate_size;
  const int I_moe = mixtral_names ? c.intermediate_size : c.moe_intermediate_size;
  auto is = [&](const std::string& suffix) { return ends_with(module, suffix); };
  if (c.kv_lora_rank > 0) {  // latent attention: this rank's heads of the per-head projections; the latent whole
    const int qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
    if (is(".self_attn.q_proj") || is(".self_attn.q_b_proj")) return Role{K::Rows, {scaled(p.q_heads, qk)}};
    if (is(".self_attn.kv_b_proj")) return Role{K::Rows, {scaled(p.q_heads, c.qk_nope_head_dim + c.v_head_dim)}};
    if (is(".self_attn.o_proj"))
      return Role{K::Cols, {scaled(p.q_heads, c.v_head_dim)}, c.num_attention_heads * c.v_head_dim};
    if (is(".self_attn.q_a_proj") || is(".self_attn.kv_a_proj_with_mqa") ||
        module.find(".self_attn.") != std::string::npos)
      return std::nullopt;
  }
  if (is(".self_attn.q_proj")) return Role{K::Rows, {q}};
  if (is(".self_attn.k_proj") || is(".self_attn.v_proj")) return Role{K::Rows, {kv}};
  if (is(".self_attn.qkv_proj")) return Role{K::Rows, {q, scaled(p.kv_heads, hd, Q), scaled(p.kv_heads, hd, Q + KV)}};
  // gpt_neox's query_key_value: each head's q, k and v rows together, so a rank's heads are one range.
  if (is(".self_attn.query_key_value")) return Role{K::Rows, {scaled(p.q_heads, 3 * hd)}};
  if (is(".self_attn.o_proj") || is(".self_attn.dense")) return Role{K::Cols, {q}, Q};
  // olmo2's q/k norms span the whole projection (per-head norms of head_dim stay whole).
  if (is(".self_attn.q_norm") && norm_dim == Q && Q != hd) return Role{K::Rows, {q}};
  if (is(".self_attn.k_norm") && norm_dim == KV && KV != hd) return Role{K::Rows, {kv}};
  // cohere's per-head norms [heads, head_dim]: this rank's heads.
  if (is(".self_attn.q_norm") && norm_heads == c.num_attention_heads) return Role{K::Rows, {p.q_heads}};
  if (is(".self_attn.k_norm") && norm_heads == c.num_key_value_heads) return Role{K::Rows, {p.kv_heads}};
  if (is(".switch_mlp.gate_proj") || is(".switch_mlp.up_proj")) return Role{K::Rows, {p.moe_inter}};
  if (is(".switch_mlp.down_proj")) return Role{K::Cols, {p.moe_inter}, I_moe};
  // The always-on expert: qwen2_moe's shared_expert, glm4_moe's / deepseek's / ernie4_5_moe's shared_experts,
  // hunyuan_v1_moe's shared_mlp.
  for (const char* shared : {".shared_expert.", ".shared_experts.", ".shared_mlp."}) {
    if (is(std::string(shared) + "gate_proj") || is(std::string(shared) + "up_proj"))
      return Role{K::Rows, {p.shared_inter}};
    if (is(std::string(shared) + "down_proj"))
      return Role{K::Cols, {p.shared_inter}, c.shared_expert_intermediate_size};
  }
  if (is(".mlp.gate_proj") || is(".mlp.up_proj") || is(".mlp.c_fc") || is(".mlp.fc1") || is(".mlp.dense_h_to_4h"))
    return Role{K::Rows, {p.inter}};
  if (is(".mlp.gate_up_proj")) return Role{K::Rows, {p.inter, {I + p.inter.begin, I + p.inter.end}}};
  if (is(".mlp.down_proj") || is(".mlp.c_proj") || is(".mlp.fc2") || is(".mlp.dense_4h_to_h"))
    return Role{K::Cols, {p.inter}, I};
  return std::nullopt;
}

mx::array take_ranges(const mx::array& a, int axis, const std::vector<Range>& ranges) {
  std::vector<mx::array> parts;
  for (auto& r : ranges) {
    mx::Shape start(a.ndim(), 0), stop = a.shape();
    start[axis] = r.begin;
    stop[axis] = r.end;
    parts.push_back(mx::slice(a, start, stop));
  }
  return mx::contiguous(parts.size() == 1 ? parts[0] : mx::concatenate(parts, axis));
}

[[noreturn]] void misaligned(const std::string& name, int granule, int size) {
  fail("distributed",
       "tensor parallelism over " + std::to_string(size) + " ranks would split '" + name +
           "' inside a quantization block of " + std::to_string(granule) +
           " columns; load the model with --dtype float32 (or bfloat16), or use another number of ranks");
}

// The number of input columns one quantization group (or llama.cpp block) of `module` covers; 1 for float.
// The llama.cpp block layout of `module` when it is kept as stored (GGUF K-quants).
std::optional<kernels::GgmlBlock> ggml_block_of(const WeightMap& w, const std::string& module) {
  auto it = w.find(module + ".ggml_type");
  if (it == w.end()) return std::nullopt;
  auto t = mx::astype(it->second, mx::uint32);
  mx::eval(t);
  return kernels::ggml_block(t.item<uint32_t>());
}

int column_granule(const WeightMap& w, const std::string& module, int full_in) {
  if (auto block = ggml_block_of(w, module)) return block->elements;
  if (auto it = w.find(module + ".scales"); it != w.end() && it->second.shape(-1) > 0)
    return full_in / it->second.shape(-1);
  return 1;
}

// The largest column granule of the projections whose inputs are split by `suffix` features.
int granule_of(const WeightMap& w, const std::string& suffix, int full_in) {
  int g = 1;
  for (auto& [name, a] : w) {
    const auto dot = name.rfind('.');
    if (dot == std::string::npos) continue;
    const auto module = name.substr(0, dot);
    if (ends_with(module, suffix)) g = std::max(g, column_granule(w, module, full_in));
  }
  return g;
}

}  // namespace

Range split(int n, int rank, int size, int granule) {
  const long long units = n / granule;
  // Earlier ranks take the larger shares (ceil), e.g. 3 KV groups over 2 ranks: 2 + 1.
  auto edge = [&](int r) { return static_cast<int>((units * r + size - 1) / size) * granule; };
  return {edge(rank), rank + 1 == size ? n : edge(rank + 1)};
}

Plan make_plan(const ModelConfig& c, const WeightMap& w, int rank, int size, bool mixtral_names) {
  Plan p;
  p.rank = rank;
  p.size = size;
  const int H = c.num_attention_heads, KVH = c.num_key_value_heads;
  // Latent attention, and multi-query attention (gpt_bigcode's one key/value head, which vLLM replicates likewise):
  // the query heads split, every rank keeps the one latent / key-value head.
  const bool one_kv_head = c.kv_lora_rank > 0 || (KVH == 1 && size > 1);
  if (one_kv_head) {
    if (H < size)
      fail("distributed", "tensor parallelism over " + std::to_string(size) + " ranks needs at least " +
                              std::to_string(size) + " attention heads; the model has " + std::to_string(H));
    p.q_heads = split(H, rank, size);
    p.kv_heads = {0, KVH};
  } else if (KVH < size)
    fail("distributed", "tensor parallelism over " + std::to_string(size) + " ranks needs at least " +
                            std::to_string(size) + " key/value heads; the model has " + std::to_string(KVH));
  if (!one_kv_head) {
    const int per_group = H / KVH;
    p.kv_heads = split(KVH, rank, size);
    p.q_heads = {p.kv_heads.begin * per_group, p.kv_heads.end * per_group};
  }
  auto split_features = [&](int n, int g, const char* what) -> Range {  // n features in blocks of g
    if (n <= 0) return {};
    if (n % g != 0 || n / g < size)
      fail("distributed", std::string("tensor parallelism over ") + std::to_string(size) + " ranks cannot split the " +
                              what + " of " + std::to_string(n) + " features in blocks of " + std::to_string(g));
    return split(n, rank, size, g);
  };
  auto features = [&](int n, const std::string& down, const char* what) {
    return split_features(n, n > 0 ? granule_of(w, down, n) : 1, what);
  };
  const int I_moe = mixtral_names ? c.intermediate_size : c.moe_intermediate_size;
  if (c.num_experts > 0) {
    p.moe_inter = features(I_moe, ".switch_mlp.down_proj", "experts' MLP");
    int g = 1;  // (the blocks of whichever shared expert the model has)
    for (const char* down : {".shared_expert.down_proj", ".shared_experts.down_proj", ".shared_mlp.down_proj"})
      g = std::max(g, granule_of(w, down, c.shared_expert_intermediate_size));
    p.shared_inter = split_features(c.shared_expert_intermediate_size, g, "shared expert");
  }
  if (!(mixtral_names && c.num_experts > 0)) {
    int g = 1;  // dense layers' down_proj (or starcoder2's c_proj)
    for (const char* s : {".mlp.down_proj", ".mlp.c_proj", ".mlp.fc2"})
      g = std::max(g, granule_of(w, s, c.intermediate_size));
    if (c.intermediate_size % g != 0 || c.intermediate_size / g < size)
      fail("distributed", "tensor parallelism over " + std::to_string(size) + " ranks cannot split the MLP of " +
                              std::to_string(c.intermediate_size) + " features in blocks of " + std::to_string(g));
    p.inter = split(c.intermediate_size, rank, size, g);
  }
  return p;
}

ModelConfig local_config(const ModelConfig& c, const Plan& p, bool mixtral_names) {
  ModelConfig l = c;
  l.num_attention_heads = p.q_heads.size();
  l.num_key_value_heads = p.kv_heads.size();
  if (mixtral_names && c.num_experts > 0) l.intermediate_size = p.moe_inter.size();
  else l.intermediate_size = p.inter.size();
  if (c.num_experts > 0 && !mixtral_names) l.moe_intermediate_size = p.moe_inter.size();
  if (c.shared_expert_intermediate_size > 0) l.shared_expert_intermediate_size = p.shared_inter.size();
  return l;
}

WeightMap slice_weights(const WeightMap& w, const ModelConfig& c, const Plan& p, bool mixtral_names) {
  // In name order, so a refusal names the first misaligned tensor (layer 0's) whatever the map's order.
  std::vector<std::string> names;
  for (auto& [name, a] : w) names.push_back(name);
  std::sort(names.begin(), names.end());
  WeightMap out;
  for (const auto& name : names) {
    const auto& a = w.at(name);
    std::string leaf;
    for (const char* l : kLeaves)
      if (ends_with(name, l)) {
        leaf = l;
        break;
      }
    if (leaf.empty()) {
      out.insert_or_assign(name, a);
      continue;
    }
    const std::string module = name.substr(0, name.size() - leaf.size());
    const int norm_dim = leaf == ".weight" && a.ndim() == 1 ? a.shape(0) : -1;
    const bool norm2d = leaf == ".weight" && a.ndim() == 2 && ends_with(module, "_norm");
    auto role = role_of(module, c, p, norm_dim, norm2d ? a.shape(0) : -1, mixtral_names);
    if (!role || leaf == ".ggml_type" || leaf == ".lora_scale") {
      out.insert_or_assign(name, a);
      continue;
    }
    if (role->kind == Role::Kind::Rows) {
      // Output features are rows of every leaf but LoRA's A (which reads the whole input).
      if (leaf == ".lora_A.weight") out.insert_or_assign(name, a);
      else out.insert_or_assign(name, take_ranges(a, a.ndim() == 1 ? 0 : a.ndim() - 2, role->ranges));
      continue;
    }
    // Input columns: the bias is added once, after the all_sum; LoRA's B maps the summed rank space.
    if (leaf == ".bias" || leaf == ".lora_B.weight") {
      out.insert_or_assign(name, a);
      continue;
    }
    const Range r = role->ranges.at(0);
    const int last = a.ndim() - 1;
    if (leaf == ".lora_A.weight") {
      out.insert_or_assign(name, take_ranges(a, last, {r}));
      continue;
    }
    const int g = column_granule(w, module, role->full_in);
    if (r.begin % g != 0 || r.end % g != 0) misaligned(module + ".weight", g, p.size);
    Range cols = r;
    if (auto block = ggml_block_of(w, module)) {
      cols = {r.begin / block->elements * block->bytes, r.end / block->elements * block->bytes};
    } else if (w.count(module + ".scales")) {
      if (leaf == ".scales" || leaf == ".biases") {
        cols = {r.begin / g, r.end / g};
      } else {  // packed uint32: bits / 32 words per column
        const long long bits = static_cast<long long>(a.shape(last)) * 32 / role->full_in;
        cols = {static_cast<int>(r.begin * bits / 32), static_cast<int>(r.end * bits / 32)};
      }
    }
    out.insert_or_assign(name, take_ranges(a, last, {cols}));
  }
  return out;
}

}  // namespace mlxgp::shard
