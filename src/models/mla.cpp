// DeepSeek-V2 / V3's multi-head latent attention (layers::LatentAttention): transformers' DeepseekV2Attention /
// DeepseekV3Attention compute q = [q_nope; rope(q_pe)] and, per head, k = [W_uk latent; rope(k_pe)], v = W_uv latent.
// q.k = (q_nope W_uk).latent + q_pe.k_pe, so the heads' scores are those of the absorbed query against one shared
// key [latent; k_pe], and softmax(s) v = W_uv (softmax(s) latent): the cache holds one latent a position, as
// mlx-lm's deepseek_v3 does, and the usual attention kernels run with one KV head.
#include "mlxgp/error.h"
#include "models/layers.h"

namespace mlxgp::layers {

LatentAttention LatentAttention::load(const WeightMap& w, const std::string& prefix, const ModelConfig& c) {
  LatentAttention m;
  m.heads = c.num_attention_heads;
  m.nope = c.qk_nope_head_dim;
  m.rope_dims = c.qk_rope_head_dim;
  m.v_dim = c.v_head_dim;
  m.rank = c.kv_lora_rank;
  const int H = m.heads, qk = m.nope + m.rope_dims;
  // DeepseekV3RMSNorm(q_lora_rank) / (kv_lora_rank): the class's eps 1e-6, not rms_norm_eps.
  constexpr float kLatentEps = 1e-6f;
  if (c.q_lora_rank > 0) {
    m.q_a_proj = Linear::load(w, prefix + ".q_a_proj", c.hidden_size, c.q_lora_rank, c.attention_bias);
    m.q_a_norm = RMSNorm::load(w, prefix + ".q_a_layernorm.weight", c.q_lora_rank, kLatentEps);
    m.q_proj = Linear::load(w, prefix + ".q_b_proj", c.q_lora_rank, H * qk, false);
  } else {
    m.q_proj = Linear::load(w, prefix + ".q_proj", c.hidden_size, H * qk, false);
  }
  m.kv_a_proj = Linear::load(w, prefix + ".kv_a_proj_with_mqa", c.hidden_size, m.rank + m.rope_dims, c.attention_bias);
  m.kv_a_norm = RMSNorm::load(w, prefix + ".kv_a_layernorm.weight", m.rank, kLatentEps);
  const auto kv_b = Linear::load(w, prefix + ".kv_b_proj", m.rank, H * (m.nope + m.v_dim), false);
  // The absorbed products read kv_b_proj's rows per head, never through Linear: an adapter on it would be skipped.
  if (kv_b.lora_a)
    fail("lora",
         "kv_b_proj (latent attention's expansion, folded into the queries) cannot take a LoRA adapter; "
         "target q_b_proj / q_proj, q_a_proj, kv_a_proj_with_mqa or o_proj");
  if (kv_b.ggml_type) fail("model", prefix + ".kv_b_proj: llama.cpp blocks are not supported for latent attention");
  auto full = kv_b.quantized()
                  ? mx::dequantize(*kv_b.weight, *kv_b.scales, kv_b.biases, kv_b.group_size, kv_b.bits, kv_b.mode)
                  : *kv_b.weight;
  full = mx::reshape(full, {H, m.nope + m.v_dim, m.rank});
  m.wk = mx::slice(full, {0, 0, 0}, {H, m.nope, m.rank});
  m.wv = mx::swapaxes(mx::slice(full, {0, m.nope, 0}, {H, m.nope + m.v_dim, m.rank}), 1, 2);
  return m;
}

std::pair<mx::array, mx::array> LatentAttention::project(
    const mx::array& x, const std::function<mx::array(const mx::array&)>& rotate) const {
  const int B = x.shape(0), T = x.shape(1), qk = nope + rope_dims;
  auto q = q_a_proj ? q_proj((*q_a_norm)((*q_a_proj)(x))) : q_proj(x);
  q = mx::transpose(mx::reshape(q, {B, T, heads, qk}), {0, 2, 1, 3});
  auto q_nope = mx::slice(q, {0, 0, 0, 0}, {B, heads, T, nope});
  auto q_pe = rotate(mx::slice(q, {0, 0, 0, nope}, {B, heads, T, qk}));
  auto ckv = kv_a_proj(x);  // [B, T, rank + rope]
  auto latent = mx::reshape(kv_a_norm(mx::slice(ckv, {0, 0, 0}, {B, T, rank})), {B, 1, T, rank});
  auto k_pe = rotate(mx::reshape(mx::slice(ckv, {0, 0, rank}, {B, T, rank + rope_dims}), {B, 1, T, rope_dims}));
  auto q_latent = mx::matmul(q_nope, mx::astype(*wk, q.dtype()));  // [B, heads, T, rank]
  return {mx::concatenate({q_latent, q_pe}, -1), mx::concatenate({latent, mx::astype(k_pe, latent.dtype())}, -1)};
}

mx::array LatentAttention::output(const mx::array& o) const {
  const int B = o.shape(0), T = o.shape(2);
  auto latent = mx::slice(o, {0, 0, 0, 0}, {B, heads, T, rank});
  auto y = mx::matmul(latent, mx::astype(*wv, o.dtype()));  // [B, heads, T, v]
  return mx::reshape(mx::transpose(y, {0, 2, 1, 3}), {B, T, heads * v_dim});
}

}  // namespace mlxgp::layers
