#include "models/moe.h"

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/kernels.h"
#include "mlxgp/error.h"
#include "models/router_capture.h"

namespace mx = mlx::core;

namespace mlxgp::layers {

namespace {

// HF per-expert projection name -> the stacked projection it belongs to.
const char* stacked_name(const std::string& proj, bool mixtral) {
  if (mixtral) return proj == "w1" ? "gate_proj" : proj == "w3" ? "up_proj" : proj == "w2" ? "down_proj" : nullptr;
  return proj == "gate_proj" || proj == "up_proj" || proj == "down_proj" ? "" : nullptr;
}

}  // namespace

std::string moe_block(const MoeOptions& o) { return o.block ? o.block : o.mixtral_names ? "block_sparse_moe" : "mlp"; }

bool is_moe_layer(const ModelConfig& c, int i) {
  if (c.num_experts <= 0) return false;
  for (int l : c.mlp_only_layers)
    if (l == i) return false;
  return (i + 1) % c.decoder_sparse_step == 0;
}

void stack_experts(WeightMap& w, const ModelConfig& c, const MoeOptions& o) {
  if (c.num_experts <= 0) return;
  const std::string ffn = "." + moe_block(o) + ".experts.";
  // (layer prefix, stacked projection, suffix) -> expert index -> tensor name
  std::map<std::tuple<std::string, std::string, std::string>, std::map<int, std::string>> groups;
  for (auto& [name, a] : w) {
    auto at = name.find(ffn);
    if (at == std::string::npos || name.rfind("model.layers.", 0) != 0) continue;
    const std::string rest = name.substr(at + ffn.size());  // "E.<proj>.<suffix>"
    auto d1 = rest.find('.');
    if (d1 == std::string::npos) continue;
    auto d2 = rest.find('.', d1 + 1);
    if (d2 == std::string::npos) continue;
    int e = -1;
    try {
      size_t used = 0;
      e = std::stoi(rest.substr(0, d1), &used);
      if (used != d1) e = -1;
    } catch (const std::exception&) {
    }
    const std::string proj = rest.substr(d1 + 1, d2 - d1 - 1), suffix = rest.substr(d2 + 1);
    const char* target = stacked_name(proj, o.mixtral_names || o.w_names);
    if (e < 0 || e >= c.num_experts || !target)
      fail("model",
           "tensor '" + name + "' names no expert projection of a " + std::to_string(c.num_experts) + "-expert model");
    const std::string stacked = *target ? target : proj;
    const std::string module = name.substr(0, at) + "." + moe_block(o);
    groups[{module, stacked, suffix}][e] = name;
  }
  for (auto& [key, members] : groups) {
    auto& [module, proj, suffix] = key;
    if (static_cast<int>(members.size()) != c.num_experts)
      fail("model", module + " holds " + proj + "." + suffix + " for " + std::to_string(members.size()) + " of " +
                        std::to_string(c.num_experts) + " experts");
    std::vector<mx::array> parts;
    for (auto& [e, name] : members) parts.push_back(w.at(name));
    for (auto& p : parts)
      if (p.shape() != parts[0].shape() || p.dtype() != parts[0].dtype())
        fail("model", module + " experts' " + proj + "." + suffix + " tensors differ in shape or type");
    auto stacked = mx::stack(parts, 0);
    for (auto& [e, name] : members) w.erase(name);
    w.insert_or_assign(module + ".switch_mlp." + proj + "." + suffix, stacked);
  }
}

void unstack_experts(WeightMap& w, bool mixtral_names) {
  std::vector<std::string> stacked;
  for (auto& [name, a] : w)
    if (name.find(".switch_mlp.") != std::string::npos) stacked.push_back(name);
  for (auto& name : stacked) {
    const auto at = name.find(".switch_mlp.");
    const std::string rest = name.substr(at + 12);  // "<proj>.<suffix>"
    const auto dot = rest.find('.');
    std::string proj = rest.substr(0, dot);
    if (mixtral_names) proj = proj == "gate_proj" ? "w1" : proj == "up_proj" ? "w3" : proj == "down_proj" ? "w2" : proj;
    const auto a = w.at(name);
    w.erase(name);
    for (int e = 0; e < a.shape(0); ++e)
      w.insert_or_assign(name.substr(0, at) + ".experts." + std::to_string(e) + "." + proj + rest.substr(dot),
                         mx::take(a, e, 0));
  }
}

SwitchLinear SwitchLinear::load(const WeightMap& w, const std::string& prefix, int experts, int in, int out,
                                bool with_bias) {
  SwitchLinear l;
  if (with_bias) l.bias = take(w, prefix + ".bias", {experts, out});
  if (w.count(prefix + ".lora_A.weight"))
    fail("model", "LoRA adapters on MoE experts ('" + prefix + "') are not supported");
  if (auto blocks = take_ggml_blocks(w, prefix, {experts, out}, in)) {
    l.weight = blocks->weight;
    l.ggml_type = blocks->type;
    l.int8_activations = blocks->int8_activations;
    return l;
  }
  auto sit = w.find(prefix + ".scales");
  if (sit == w.end()) {
    l.weight = take(w, prefix + ".weight", {experts, out, in});
    if (!mx::issubdtype(l.weight->dtype(), mx::floating))
      fail("model", "tensor '" + prefix + ".weight' is not a float tensor");
    return l;
  }
  auto wit = w.find(prefix + ".weight");
  if (wit == w.end()) fail("model", "missing tensor '" + prefix + ".weight'");
  const auto& qw = wit->second;
  const auto& sc = sit->second;
  if (qw.ndim() != 3 || sc.ndim() != 3 || qw.shape(0) != experts || qw.shape(1) != out || sc.shape(0) != experts ||
      sc.shape(1) != out || sc.shape(2) == 0 || qw.dtype() != mx::uint32 || in % sc.shape(2) != 0 ||
      (qw.shape(2) * 32) % in != 0)
    fail("model", "quantized expert tensor '" + prefix + ".weight' has shape " + shape_str(qw.shape()) +
                      " with scales " + shape_str(sc.shape()) + ", which does not fit [" + std::to_string(experts) +
                      ", " + std::to_string(out) + ", " + std::to_string(in) + "]");
  l.group_size = in / sc.shape(2);
  l.bits = qw.shape(2) * 32 / in;
  UsedNames::record(prefix + ".weight");
  UsedNames::record(prefix + ".scales");
  l.weight = qw;
  l.scales = sc;
  if (sc.dtype() == mx::uint8) {  // a microscaling mode (gpt-oss's original experts are MXFP4): no biases
    l.mode = microscaling_mode(w, prefix, l.bits, l.group_size);
    return l;
  }
  check_quantization(prefix + ".weight", l.bits, l.group_size);
  l.biases = take(w, prefix + ".biases", sc.shape());
  return l;
}

mx::array SwitchLinear::operator()(const mx::array& x, const mx::array& indices) const {
  auto y = product(x, indices);
  if (!bias) return y;
  // [..., k, 1, out] + the chosen experts' biases [..., k, out].
  auto b = mx::expand_dims(mx::take(*bias, indices, 0), -2);
  return mx::add(y, b.dtype() == y.dtype() ? b : mx::astype(b, y.dtype()));
}

mx::array SwitchLinear::product(const mx::array& x, const mx::array& indices) const {
  if (ggml_type) return kernels::ggml_gather_matmul(x, *weight, indices, *ggml_type, int8_activations);
  if (!scales) {
    // MLX's CPU gather_mm takes float32 alone ("[GatherMM::eval] Currently only supports float32"): half
    // experts multiply in float32 and round once, as a bf16 matmul accumulating in float32 does.
    if (mx::default_device() == mx::Device::cpu && x.dtype() != mx::float32)
      return mx::astype(mx::gather_mm(mx::astype(x, mx::float32),
                                      mx::swapaxes(mx::astype(*weight, mx::float32), -1, -2), std::nullopt, indices),
                        x.dtype());
    return mx::gather_mm(x, mx::swapaxes(*weight, -1, -2), std::nullopt, indices);
  }
  // The CPU kernels where they apply, else MLX's gather_qmm (kernels::gather_quantized_matmul decides).
  return kernels::gather_quantized_matmul(x, *weight, *scales, biases, indices, group_size, bits, mode);
}

SparseMoe SparseMoe::load(const WeightMap& w, const std::string& prefix, const ModelConfig& c, const MoeOptions& o) {
  SparseMoe m;
  const int E = c.num_experts, H = c.hidden_size;
  const int I = o.mixtral_names ? c.intermediate_size : c.moe_intermediate_size;
  m.router = Linear::load(w, o.gemma4 ? prefix.substr(0, prefix.rfind('.')) + ".router.proj" : prefix + "." + o.router,
                          H, E, o.gpt_oss);
  if (o.gemma4) {
    const std::string r = prefix.substr(0, prefix.rfind('.')) + ".router.";
    m.router_scale = take(w, r + "scale", {H});
    m.per_expert_scale = take(w, r + "per_expert_scale", {E});
    m.router_eps = c.rms_norm_eps;
  }
  m.gate_proj = SwitchLinear::load(w, prefix + ".switch_mlp.gate_proj", E, H, I, o.gpt_oss);
  m.up_proj = SwitchLinear::load(w, prefix + ".switch_mlp.up_proj", E, H, I, o.gpt_oss);
  m.down_proj = SwitchLinear::load(w, prefix + ".switch_mlp.down_proj", E, I, H, o.gpt_oss);
  m.act = parse_activation(c.hidden_act);
  if (o.gpt_oss) m.clamped_swiglu = std::pair{c.swiglu_alpha, c.swiglu_limit};
  m.top_k = c.num_experts_per_tok;
  m.renormalize = o.mixtral_names || c.norm_topk_prob;
  // transformers' Glm4MoeTopkRouter / DeepseekV2TopkRouter / DeepseekV3TopkRouter: float32 weights and logits
  // whatever the model's dtype.
  // (Lfm2MoeTopKRouter computes its logits in the model's dtype.)
  m.float32_router = (c.sigmoid_routing && c.model_type != "lfm2_moe") || c.model_type == "deepseek_v2" ||
                     c.model_type == "ernie4_5_moe" || c.model_type == "hunyuan_v1_moe";
  if (m.float32_router && m.router.weight && !m.router.quantized())
    m.router.weight = mx::astype(*m.router.weight, mx::float32);
  m.sigmoid_scores = c.sigmoid_routing;
  if (c.sigmoid_routing && c.model_type != "lfm2_moe")
    m.score_bias = take(w, prefix + ".gate.e_score_correction_bias", {E});
  if (c.use_expert_bias) m.score_bias = take(w, prefix + ".expert_bias", {E});  // lfm2_moe
  m.renorm_eps = o.renorm_eps;
  // Ernie4_5_MoeStatics' [1, E] (a GGUF file's exp_probs_b [E]); absent (mlx-lm's folders drop it), transformers'
  // zeros.
  if (const auto bias = prefix + ".moe_statics.e_score_correction_bias"; c.softmax_score_bias && w.count(bias))
    m.score_bias = mx::reshape(take(w, bias, w.at(bias).ndim() == 1 ? mx::Shape{E} : mx::Shape{1, E}), {E});
  m.norm_min = c.moe_norm_min;
  if (c.sigmoid_routing || c.group_limited_greedy) {
    m.n_group = c.n_group;
    m.topk_group = c.topk_group;
  }
  m.routed_scaling = c.routed_scaling_factor;
  m.scaled_inputs = c.llama4_routing;
  if (c.sparsemixer) m.sparsemixer_eps = static_cast<float>(c.router_jitter_noise);
  if (c.shared_expert_intermediate_size > 0) {
    ModelConfig sc = c;
    sc.intermediate_size = c.shared_expert_intermediate_size;
    m.shared_expert = SwiGLU::load(w, prefix + "." + o.shared_expert, sc);
    if (o.shared_expert_gate) m.shared_expert_gate = Linear::load(w, prefix + ".shared_expert_gate", H, 1, false);
  }
  return m;
}

namespace {

// transformers' GptOssExperts._apply_gate: gate clamped above at limit, up to [-limit, limit];
// (up + 1) * gate * sigmoid(alpha * gate).
mx::array gpt_oss_glu(const mx::array& gate, const mx::array& up, std::pair<float, float> alpha_limit) {
  const auto [alpha, limit] = alpha_limit;
  auto lim = mx::array(limit, gate.dtype());
  auto g = mx::minimum(gate, lim);
  auto u = mx::clip(up, mx::negative(lim), lim);
  auto glu = mx::multiply(g, mx::sigmoid(mx::multiply(g, mx::array(alpha, gate.dtype()))));
  return mx::multiply(mx::add(u, mx::array(1.0f, u.dtype())), glu);
}

}  // namespace

namespace {

// The indices of the k largest `scores` along the last axis, unordered (no gradient flows through a choice).
mx::array top_indices(const mx::array& scores, int k) {
  auto part = mx::argpartition(mx::negative(scores), k - 1, -1);
  auto end = part.shape();
  end.back() = k;
  return mx::stop_gradient(mx::slice(part, mx::Shape(part.ndim(), 0), end));
}

}  // namespace

std::pair<mx::array, mx::array> SparseMoe::sparsemixer(const mx::array& logits) const {
  // transformers' sparsemixer in eval mode (PhimoeTopKRouter): the best expert, weighted by its softmax among the
  // experts whose logit s is within 2 eps of the best b, (b - s) / max(|s|, b) <= 2 eps; then the best of the
  // others, weighted likewise among the others. Ties go to the first index, as torch's max.
  const auto s = mx::astype(logits, mx::float32);
  const auto ninf = mx::array(-std::numeric_limits<float>::infinity());
  const auto threshold = mx::array(2.0f * *sparsemixer_eps);
  auto pick = [&](const mx::array& candidates) {  // s with the experts already chosen at -inf
    auto index = mx::stop_gradient(mx::expand_dims(mx::argmax(candidates, -1), -1));
    auto best = mx::stop_gradient(mx::take_along_axis(candidates, index, -1));
    auto far =
        mx::stop_gradient(mx::greater(mx::divide(mx::subtract(best, s), mx::maximum(mx::abs(s), best)), threshold));
    auto gates = mx::softmax(mx::where(far, ninf, candidates), -1);
    return std::pair{index, mx::take_along_axis(gates, index, -1)};
  };
  auto [first, w1] = pick(s);
  auto [second, w2] = pick(mx::put_along_axis(s, first, ninf, -1));
  return {mx::concatenate({first, second}, -1), mx::concatenate({w1, w2}, -1)};
}

std::pair<mx::array, mx::array> SparseMoe::route(const mx::array& x) const {
  if (sparsemixer_eps) {
    auto logits = router(x);
    RouterLogitsCapture::record(logits);
    return sparsemixer(logits);
  }
  if (scaled_inputs) {  // transformers' Llama4Router: the sigmoid (in float32) of the top-k logits
    auto logits = router(x);
    RouterLogitsCapture::record(logits);
    auto indices = top_indices(logits, top_k);
    return {indices, mx::sigmoid(mx::astype(mx::take_along_axis(logits, indices, -1), mx::float32))};
  }
  if (router_scale) {
    // transformers' Gemma4TextRouter: norm(x) * scale * hidden^-0.5 -> logits; softmax over all experts in float32,
    // top-k renormalised, times each chosen expert's per_expert_scale.
    auto n = mx::fast::rms_norm(x, std::nullopt, router_eps);
    const float root = 1.0f / std::sqrt(static_cast<float>(x.shape(-1)));
    n = mx::multiply(mx::multiply(n, mx::astype(*router_scale, n.dtype())), mx::array(root, n.dtype()));
    auto logits = router(n);
    RouterLogitsCapture::record(logits);
    auto probs = mx::softmax(mx::astype(logits, mx::float32), -1);
    auto indices = top_indices(probs, top_k);
    auto weights = mx::take_along_axis(probs, indices, -1);
    weights = mx::divide(weights, mx::sum(weights, -1, true));
    return {indices, mx::multiply(weights, mx::astype(mx::take(*per_expert_scale, indices), mx::float32))};
  }
  if (!sigmoid_scores) {
    // transformers' TopKRouter: softmax over all experts in float32, top-k, optionally renormalised (Ernie4_5_Moe's:
    // chosen on the probabilities plus the correction bias, divided by max(their sum, norm_min)).
    auto logits = router(float32_router ? mx::astype(x, mx::float32) : x);
    RouterLogitsCapture::record(logits);
    auto probs = mx::softmax(mx::astype(logits, mx::float32), -1);
    auto choice = probs;
    if (topk_group < n_group) {
      // DeepseekV2TopkRouter's group_limited_greedy: the topk_group groups whose best expert scores most; the
      // others' probabilities count as 0 in the choice.
      auto shape = probs.shape();
      shape.back() = n_group;
      shape.push_back(static_cast<int>(probs.shape(-1)) / n_group);
      auto grouped = mx::reshape(probs, shape);
      auto keep = mx::put_along_axis(mx::zeros(mx::Shape(shape.begin(), shape.end() - 1), mx::float32),
                                     top_indices(mx::max(grouped, -1), topk_group), mx::array(1.0f), -1);
      choice = mx::reshape(mx::multiply(grouped, mx::expand_dims(keep, -1)), probs.shape());
    }
    if (score_bias) choice = mx::add(choice, mx::astype(*score_bias, mx::float32));
    auto indices = top_indices(choice, top_k);
    auto weights = mx::take_along_axis(probs, indices, -1);
    if (renormalize) {
      auto sum = mx::sum(weights, -1, true);
      weights = mx::divide(weights, norm_min > 0 ? mx::maximum(sum, mx::array(norm_min)) : sum);
    }
    if (routed_scaling != 1.0f) weights = mx::multiply(weights, mx::array(routed_scaling));
    return {indices, weights};
  }
  // transformers' Glm4MoeTopkRouter: float32 logits, sigmoid scores; the choice is made on scores + bias within
  // the topk_group groups whose two best biased scores sum highest (the others' experts at -inf); the chosen
  // unbiased scores are renormalised (+ 1e-20) and scaled by routed_scaling_factor.
  // (Lfm2MoeTopKRouter: the logits in the model's dtype, the plain scores chosen from without use_expert_bias.)
  auto logits = router(float32_router ? mx::astype(x, mx::float32) : x);
  auto scores = mx::sigmoid(mx::astype(logits, mx::float32));
  auto choice = score_bias ? mx::add(scores, mx::astype(*score_bias, mx::float32)) : scores;
  const int E = static_cast<int>(choice.shape(-1));
  if (topk_group < n_group) {
    auto shape = choice.shape();
    shape.back() = n_group;
    shape.push_back(E / n_group);
    auto grouped = mx::reshape(choice, shape);
    auto group_scores = mx::sum(mx::topk(grouped, 2, -1), -1);  // [..., n_group]
    auto keep =
        mx::put_along_axis(mx::zeros_like(group_scores), top_indices(group_scores, topk_group), mx::array(1.0f), -1);
    auto masked = mx::where(mx::expand_dims(mx::greater(keep, mx::array(0.0f)), -1), grouped,
                            mx::array(-std::numeric_limits<float>::infinity()));
    choice = mx::reshape(masked, scores.shape());
  }
  auto indices = top_indices(choice, top_k);
  auto weights = mx::take_along_axis(scores, indices, -1);
  if (renormalize) weights = mx::divide(weights, mx::add(mx::sum(weights, -1, true), mx::array(renorm_eps)));
  return {indices, mx::multiply(weights, mx::array(routed_scaling))};
}

mx::array SparseMoe::scaled_input_experts(const mx::array& x, const mx::array& indices,
                                          const mx::array& weights) const {
  // Llama4TextMoe: routed_in = token x its score for each chosen expert, the experts' outputs summed as they are.
  // Each (token, expert) pair runs as its own row of one expert.
  const int H = x.shape(-1);
  auto scaled = mx::multiply(mx::expand_dims(x, -2), mx::expand_dims(weights, -1));  // [..., k, hidden]
  auto rows = mx::reshape(scaled, {-1, 1, 1, H});
  auto idx = mx::reshape(indices, {-1, 1});
  auto h = gated_activation(act, gate_proj(rows, idx), up_proj(rows, idx));
  return mx::sum(mx::reshape(down_proj(h, idx), scaled.shape()), -2);
}

mx::array SparseMoe::weighted_experts(const mx::array& x, const mx::array& indices, const mx::array& weights) const {
  auto xe = mx::expand_dims(x, {-2, -3});  // [..., 1, 1, hidden]
  auto h = clamped_swiglu ? gpt_oss_glu(gate_proj(xe, indices), up_proj(xe, indices), *clamped_swiglu)
                          : gated_activation(act, gate_proj(xe, indices), up_proj(xe, indices));
  auto y = mx::squeeze(down_proj(h, indices), -2);  // [..., k, hidden]
  return mx::sum(mx::multiply(y, mx::expand_dims(weights, -1)), -2);
}

mx::array SparseMoe::operator()(const mx::array& x) const { return (*this)(x, x); }

mx::array SparseMoe::operator()(const mx::array& x, const mx::array& route_on) const {
  // The router's weights cast to the activations' dtype; the chosen experts' outputs summed with them (or, for
  // scaled_inputs, their inputs scaled by them).
  auto [indices, routed] = route(route_on);
  auto weights = mx::astype(routed, x.dtype());
  auto out = scaled_inputs ? scaled_input_experts(x, indices, weights) : weighted_experts(x, indices, weights);
  if (shared_expert) {
    auto s = (*shared_expert)(x);
    if (shared_expert_gate) s = mx::multiply(mx::sigmoid((*shared_expert_gate)(x)), s);
    out = mx::add(out, s);
  }
  if (!reduce) return out;
  out = mx::distributed::all_sum(out, *reduce);
  return shared_down_bias ? mx::add(out, mx::astype(*shared_down_bias, out.dtype())) : out;
}

}  // namespace mlxgp::layers
