// DecoderModel::fused_decode: a decode step's blocks as one kernels::decode_layers node, where that node
// runs exactly the kernels the blocks would run op by op (so the logits are the same bits) and nothing
// needs the layers one by one: hooks between them, LoRA, tensor parallelism, gradients, other caches.
#include <cstdlib>
#include <cstring>

#include "mlxgp/kv_cache.h"
#include "mlxgp/quantized_kv_cache.h"

#include "kernels/decode_layers.h"
#include "models/decoder.h"

namespace mlxgp {

namespace {

// MLXGP_DISABLE_FUSED_DECODE=1 runs the blocks op by op (A/B measurements; the tests compare both).
bool fused_decode_enabled() {
  const char* e = std::getenv("MLXGP_DISABLE_FUSED_DECODE");
  return !e || std::strcmp(e, "1") != 0;
}

// A llama.cpp-block Linear the fused node multiplies as Linear::operator() would: no bias, adapter or
// cross-rank sum.
std::optional<kernels::DecodeWeight> block_weight(const layers::Linear& l) {
  if (!l.ggml_type || !l.weight || l.bias || l.lora_a || l.reduce) return std::nullopt;
  return kernels::DecodeWeight{l.q8_packed ? &*l.q8_packed : &*l.weight, *l.ggml_type, l.int8_activations,
                               l.q8_packed.has_value()};
}

}  // namespace

std::optional<mx::array> DecoderModel::fused_decode(const mx::array& h, KVCacheList& caches, const AttentionMask& mask,
                                                    const std::optional<AttentionMask>& local) const {
  using Norms = DecoderOptions::Norms;
  if (h.ndim() != 3 || h.shape(1) != 1 || h.is_tracer() || !fused_decode_enabled()) return std::nullopt;
  if (options_.norms != Norms::Pre || config_.residual_multiplier != 1.0f) return std::nullopt;
  for (size_t i = 0; i < blocks_.size(); ++i)  // a hook on a block's output needs the blocks one by one
    if (hooks().wants(HookPoint::Residual, static_cast<int>(i))) return std::nullopt;
  // A single query needs no mask: its kind is None and the left padding is the key starts. A sliding window or
  // chunk that hides keys makes an array mask (sliding_window_mask, chunked_mask), which only the op-by-op path
  // applies.
  if (mask.kind != AttentionMask::Kind::None || (local && local->kind != AttentionMask::Kind::None))
    return std::nullopt;
  // Every layer's cache standard, or every one quantized alike.
  std::vector<StandardKVCache*> standard;
  std::vector<QuantizedKVCache*> quantized;
  kernels::KvQuantization quant;
  for (const auto& c : caches) {
    if (c->offset() != caches[0]->offset()) return std::nullopt;
    if (auto* s = dynamic_cast<StandardKVCache*>(c.get())) {
      standard.push_back(s);
    } else if (auto* q = dynamic_cast<QuantizedKVCache*>(c.get())) {
      if (!quantized.empty() && (q->bits() != quant.bits || q->group_size() != quant.group)) return std::nullopt;
      quant = {q->bits(), q->group_size()};
      quantized.push_back(q);
    } else {
      return std::nullopt;
    }
  }
  if (!standard.empty() && !quantized.empty()) return std::nullopt;
  std::vector<kernels::DecodeLayer> layers;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    const auto& a = b.attention;
    if (b.moe || !b.mlp || b.mlp->kind != layers::SwiGLU::Kind::Gated || b.mlp->act != layers::SwiGLU::Act::Silu ||
        a.mla || a.qkv_proj || a.output_gate || a.q_norm || a.k_norm || a.softcap || a.clip_qkv || a.sinks ||
        a.llama4_beta || !b.input_norm || !b.post_attention_norm)
      return std::nullopt;
    const auto in_w = b.input_norm->kernel_weight(), post_w = b.post_attention_norm->kernel_weight();
    if (!in_w || !post_w) return std::nullopt;
    kernels::DecodeLayer m;
    // kernel_weight() is the stored weight or the norm's own (1 + w), both kept alive by the model.
    m.input_norm = b.input_norm->effective ? &*b.input_norm->effective : &*b.input_norm->weight;
    m.post_norm =
        b.post_attention_norm->effective ? &*b.post_attention_norm->effective : &*b.post_attention_norm->weight;
    m.input_eps = b.input_norm->eps;
    m.post_eps = b.post_attention_norm->eps;
    const layers::Linear* ls[] = {&a.q_proj,         &a.k_proj,       &a.v_proj,        &a.o_proj,
                                  &b.mlp->gate_proj, &b.mlp->up_proj, &b.mlp->down_proj};
    kernels::DecodeWeight* ws[] = {&m.q, &m.k, &m.v, &m.o, &m.gate, &m.up, &m.down};
    for (int j = 0; j < 7; ++j) {
      auto w = block_weight(*ls[j]);
      if (!w) return std::nullopt;
      *ws[j] = *w;
    }
    m.n_heads = a.n_heads;
    m.n_kv_heads = a.n_kv_heads;
    m.head_dim = a.head_dim;
    m.scale = a.scale;
    if (a.rope) {  // kernels::rope's frequencies only (mx::fast::rope's periods run op by op)
      m.rope = a.rope->kernel_params(*caches[i], 1, a.head_dim);
      if (!m.rope) return std::nullopt;
    }
    layers.push_back(std::move(m));
  }
  // The buffers last: taking them may copy or grow them (harmless if a later check still says no).
  std::vector<mx::array> keys, values;
  int slot = -1;
  for (auto* s : standard) {
    auto w = s->writable(1);
    if (!w || (slot >= 0 && w->slot != slot)) return std::nullopt;
    slot = w->slot;
    keys.push_back(w->keys);
    values.push_back(w->values);
  }
  for (auto* q : quantized) {
    auto w = q->writable(1);
    if (!w || (slot >= 0 && w->slot != slot)) return std::nullopt;
    slot = w->slot;
    keys.insert(keys.end(), {w->keys.data, w->keys.scales, w->keys.biases});
    values.insert(values.end(), {w->values.data, w->values.scales, w->values.biases});
  }
  if (!kernels::decode_layers_supported(h, layers, keys, values, slot, quant)) return std::nullopt;
  auto out = kernels::decode_layers(h, layers, keys, values, slot, mask.key_start, quant);
  // The node writes the buffers in place: the caches keep them as depending on it (one Depends node for all),
  // so a later read runs it even where nobody evaluates `out` (a prefill's last one-token step).
  std::vector<mx::array> buffers = keys;
  buffers.insert(buffers.end(), values.begin(), values.end());
  const auto after = mx::depends(buffers, {out});
  const size_t nk = keys.size();
  for (size_t i = 0; i < standard.size(); ++i) standard[i]->advance(1, {after[i], after[nk + i], slot});
  for (size_t i = 0; i < quantized.size(); ++i) {
    auto tensor = [&](size_t at) { return QuantizedTensor{after[at], after[at + 1], after[at + 2]}; };
    quantized[i]->advance(1, {tensor(3 * i), tensor(nk + 3 * i), slot});
  }
  return out;
}

}  // namespace mlxgp
