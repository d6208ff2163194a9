#include "models/decoder.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "mlxgp/error.h"
#include "mlxgp/recurrent_cache.h"
#include "mlxgp/rotating_kv_cache.h"

#include "cache/batch_rotating_kv_cache.h"
#include "models/model_names.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

// transformers' sliding_window_causal_mask_function: the query at absolute position p sees the keys
// at positions (p - window, p]. Keys are the `offset` cached positions then the `n` new ones, in
// temporal order (standard and quantized caches). Returns `causal` itself while no key falls out.
AttentionMask sliding_window_mask(int offset, int n, int window, const AttentionMask& causal) {
  if (offset + n <= window) return causal;
  auto q = mx::reshape(mx::arange(offset, offset + n, mx::int32), {n, 1});
  auto k = mx::reshape(mx::arange(offset + n, mx::int32), {1, offset + n});
  auto mask = mx::logical_and(mx::less_equal(k, q), mx::greater(k, mx::subtract(q, mx::array(window, mx::int32))));
  // A left-padded batch's mask also hides each row's padding (the window is relative, so slot
  // distances equal position distances).
  if (causal.array) mask = mx::logical_and(*causal.array, mask);
  return {AttentionMask::Kind::Array, mask};
}

// transformers' chunked_causal_mask_function (llama4_text): the query at position p sees the keys at positions
// (p's chunk start, p], chunks of `chunk` positions counted from each row's first token (left padding excluded).
// Returns `causal` itself while every position lies in the first chunk.
AttentionMask chunked_mask(int offset, int n, int chunk, const AttentionMask& causal, const std::vector<int>& padding) {
  if (offset + n <= chunk) return causal;
  const int L = offset + n;
  auto q = mx::reshape(mx::arange(offset, L, mx::int32), {1, n, 1});
  auto k = mx::reshape(mx::arange(L, mx::int32), {1, 1, L});
  if (!padding.empty()) {
    // Positions from each row's first token; its padding slots (clamped to 0 here) stay hidden by causal's array.
    auto pad = mx::reshape(mx::array(padding.data(), {static_cast<int>(padding.size())}, mx::int32), {-1, 1, 1});
    q = mx::subtract(q, pad);
    k = mx::maximum(mx::subtract(k, pad), mx::array(0, mx::int32));
  }
  auto c = mx::array(chunk, mx::int32);
  auto mask = mx::logical_and(mx::less_equal(k, q), mx::equal(mx::floor_divide(k, c), mx::floor_divide(q, c)));
  if (causal.array) return {AttentionMask::Kind::Array, mx::logical_and(*causal.array, mx::expand_dims(mask, 1))};
  return {AttentionMask::Kind::Array, mx::reshape(mask, {n, L})};
}

}  // namespace

// Whether tensors prefix.weight (and .scales / .biases, quantized) of a and b are present alike and equal.
static bool same_tensors(const WeightMap& w, const std::string& a, const std::string& b) {
  for (const char* part : {".weight", ".scales", ".biases"}) {
    auto x = w.find(a + part), y = w.find(b + part);
    if ((x == w.end()) != (y == w.end())) return false;
    if (x == w.end()) continue;
    if (x->second.shape() != y->second.shape() || x->second.dtype() != y->second.dtype()) return false;
    if (!mx::array_equal(x->second, y->second).item<bool>()) return false;
  }
  return true;
}

DecoderModel::DecoderModel(const ModelConfig& c, WeightMap weights, const DecoderOptions& options)
    : config_(c), options_(options) {
  layers::parse_activation(c.hidden_act);  // names an unsupported activation before any tensor is read
  // transformers 5.24 (PreTrainedModel.tie_weights): with tie_word_embeddings set and lm_head.weight
  // saved as well, the two are tied only when equal; a different saved head is used (with a warning).
  if (config_.tie_word_embeddings && weights.count("lm_head.weight") &&
      !same_tensors(weights, "lm_head", "model.embed_tokens"))
    config_.tie_word_embeddings = false;
  build(weights);
}

DecoderModel::DecoderModel(const ModelConfig& c, const WeightMap& weights, const DecoderOptions& options,
                           std::optional<TensorParallel> tp)
    : config_(c), tp_(std::move(tp)), options_(options) {
  build(weights);
}

std::shared_ptr<Model> DecoderModel::first_layers(int n) {
  check_layer_count(n);
  // gemma4_text's per-layer input table and its shared layers are laid out for the whole stack.
  if ((config_.per_layer_input_size > 0 || config_.num_kv_shared_layers > 0) && n < config_.num_hidden_layers)
    fail("config", "a draft of the first layers of " + config_.model_type +
                       " with per-layer inputs or layers that share keys and values is not supported");
  ModelConfig c = config_;
  c.num_hidden_layers = n;
  // This rank's share of the first n layers, built with the same split: a sharded draft of a sharded model.
  return std::shared_ptr<Model>(new DecoderModel(c, layers_below(weights_, n), options_, tp_));
}

void DecoderModel::build(const WeightMap& loaded) {
  // Everything is loaded into locals first, so a bad tensor leaves the model untouched. A sharded model's
  // layers are built with this rank's head counts and widths.
  const ModelConfig local = tp_ ? shard::local_config(config_, tp_->plan, options_.moe.mixtral_names) : config_;
  const auto& c = local;
  WeightMap weights = loaded;
  layers::stack_experts(weights, c, options_.moe);  // HF per-expert tensors -> stacked (switch_mlp)
  layers::UsedNames used;
  layers::RepackScope repacks(repacks_);
  auto embed = layers::Embedding::load(weights, "model.embed_tokens", c.vocab_size, c.hidden_size);
  // The config's layer count is checked against the layers the weights hold before anything is sized by
  // it (a corrupt num_hidden_layers / block_count of 10^9 would otherwise exhaust memory).
  std::set<std::string> layer_ids;  // the N of every model.layers.N.* tensor
  for (auto& [name, array] : weights) {
    if (name.rfind("model.layers.", 0) != 0) continue;
    const auto dot = name.find('.', 13);
    if (dot != std::string::npos && dot > 13) layer_ids.insert(name.substr(13, dot - 13));
  }
  const long long present = static_cast<long long>(layer_ids.size());
  if (c.num_hidden_layers > present)
    fail("model", "the config has " + std::to_string(c.num_hidden_layers) + " layers but the weights hold " +
                      std::to_string(present) + " (model.layers.N tensors)");
  std::vector<Block> blocks;
  blocks.reserve(c.num_hidden_layers);
  using Norms = DecoderOptions::Norms;
  const auto& o = options_;
  auto norm_at = [&](const std::string& name) {
    if (o.norm_weightless) {  // transformers' OlmoLayerNorm: nothing stored
      layers::RMSNorm n;
      n.eps = c.rms_norm_eps;
      n.layer_norm = true;
      return n;
    }
    if (o.layer_norm)
      return layers::RMSNorm::load_layer_norm(weights, name, c.hidden_size, c.rms_norm_eps, o.norm_bias,
                                              o.norm_plus_one);
    return layers::RMSNorm::load(weights, name, c.hidden_size, c.rms_norm_eps, o.norm_plus_one);
  };
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i);
    const bool conv = i < static_cast<int>(c.conv_layers.size()) && c.conv_layers[i];
    const bool linear = i < static_cast<int>(c.linear_layers.size()) && c.linear_layers[i];
    Block b{
        std::nullopt,
        std::nullopt,
        std::nullopt,
        std::nullopt,
        conv || linear ? layers::Attention{} : layers::Attention::load(weights, p + ".self_attn", c, o.attention, i),
        std::nullopt,
        std::nullopt,
        std::nullopt};
    if (conv) b.conv = layers::ShortConv::load(weights, p + ".conv", c);
    if (linear) b.delta = layers::GatedDeltaNet::load(weights, p + ".linear_attn", c);
    const auto& n = o.norm_names;
    auto layer_norm = [&](const char* name) { return norm_at(p + "." + name + ".weight"); };
    // gemma4_text (use_double_wide_mlp): the layers that share keys and values have MLPs twice as wide.
    const ModelConfig* mlp_config = &c;
    ModelConfig wide;
    if (c.double_wide_mlp && c.num_kv_shared_layers > 0 && i >= c.num_hidden_layers - c.num_kv_shared_layers) {
      wide = c;
      wide.intermediate_size *= 2;
      mlp_config = &wide;
    }
    if (o.moe_beside_mlp && layers::is_moe_layer(c, i)) {  // gemma4_text
      b.mlp = layers::SwiGLU::load(weights, p + ".mlp", *mlp_config, o.mlp, o.plain_mlp_names);
      b.moe = layers::SparseMoe::load(weights, p + ".experts", c, o.moe);
      b.pre_experts_norm = layer_norm("pre_feedforward_layernorm_2");
      b.post_mlp_norm = layer_norm("post_feedforward_layernorm_1");
      b.post_experts_norm = layer_norm("post_feedforward_layernorm_2");
    } else if (layers::is_moe_layer(c, i)) {
      b.moe = layers::SparseMoe::load(weights, p + "." + layers::moe_block(o.moe), c, o.moe);
    } else {
      b.mlp = layers::SwiGLU::load(weights, p + "." + o.mlp_prefix, *mlp_config, o.mlp, o.plain_mlp_names,
                                   o.gated_mlp_names);
    }
    if (o.layer_scalar) b.layer_scalar = layers::take(weights, p + ".layer_scalar", {1});
    if (c.per_layer_input_size > 0) {
      const int P = c.per_layer_input_size;
      b.per_layer_input =
          Block::PerLayerInput{layers::Linear::load(weights, p + ".per_layer_input_gate", c.hidden_size, P, false),
                               layers::Linear::load(weights, p + ".per_layer_projection", P, c.hidden_size, false),
                               layer_norm("post_per_layer_input_norm"), layers::parse_activation(c.hidden_act)};
    }
    if (c.num_kv_shared_layers > 0) {
      // Gemma4TextConfig.kv_sharing_modes: the last layer of each type before the shared ones stores, they reuse.
      const int first_shared = c.num_hidden_layers - c.num_kv_shared_layers;
      const bool sliding = layer_slides(c, i);
      bool last_of_type = i < first_shared;
      for (int k = i + 1; k < first_shared && last_of_type; ++k) last_of_type = layer_slides(c, k) != sliding;
      if (i >= first_shared || last_of_type) b.kv_slot = sliding ? 0 : 1;
    }
    if (o.norms != Norms::Post) b.input_norm = layer_norm(n.input);
    if (o.norms != Norms::Parallel) b.post_attention_norm = layer_norm(n.post_attention);
    if (o.norms == Norms::Sandwich) b.pre_feedforward_norm = layer_norm(n.pre_feedforward);
    if (o.norms == Norms::Sandwich || o.norms == Norms::Post) b.post_feedforward_norm = layer_norm(n.post_feedforward);
    if (tp_) {  // the projections that read a split input sum their outputs over the ranks
      b.attention.o_proj.reduce = tp_->group;
      if (b.attention.full_qk_norm) {
        b.attention.norm_group = tp_->group;
        b.attention.q_norm_dim = config_.num_attention_heads * config_.head_dim;
        b.attention.k_norm_dim = config_.num_key_value_heads * config_.head_dim;
      }
      if (b.mlp) b.mlp->down_proj.reduce = tp_->group;
      if (b.moe) {
        b.moe->reduce = tp_->group;
        // The shared expert's output is summed with the experts' once: its down_proj bias joins after the sum
        // (behind qwen2_moe's sigmoid gate it would need the gate too; no such checkpoint has one).
        if (b.moe->shared_expert && b.moe->shared_expert->down_proj.bias) {
          if (b.moe->shared_expert_gate)
            fail("distributed", "tensor parallelism over a gated shared expert with a down_proj bias is not supported");
          std::swap(b.moe->shared_down_bias, b.moe->shared_expert->down_proj.bias);
        }
      }
    }
    blocks.push_back(std::move(b));
  }
  auto norm = norm_at(std::string("model.") + o.final_norm + ".weight");
  // The activation dtype (see io/loader.cpp): the final norm's, else (olmo's norms store nothing) the embedding's
  // (activation_dtype_weight), else float32 (a GGUF file's block table dequantizes to it).
  const auto* act = norm.weight ? &*norm.weight : activation_dtype_weight(weights);
  const mx::Dtype act_dtype = act ? act->dtype() : mx::float32;
  embed.dequant_dtype = act_dtype;
  std::optional<PerLayerInputs> per_layer;
  if (c.per_layer_input_size > 0) {  // gemma4_text: [vocab, layers x P] packed as Gemma4TextModel packs it
    const int P = c.per_layer_input_size, LP = c.num_hidden_layers * P;
    per_layer =
        PerLayerInputs{layers::Embedding::load(weights, "model.embed_tokens_per_layer", c.per_layer_input_vocab, LP),
                       layers::Linear::load(weights, "model.per_layer_model_projection", c.hidden_size, LP, false),
                       layers::RMSNorm::load(weights, "model.per_layer_projection_norm.weight", P, c.rms_norm_eps)};
    per_layer->table.dequant_dtype = act_dtype;
  }
  std::optional<layers::Embedding> positions;
  if (o.learned_positions) {
    positions = layers::Embedding::load(weights, "model.embed_positions", c.max_position_embeddings, c.hidden_size);
    positions->dequant_dtype = act_dtype;
  }
  if (o.scale_embeddings) {
    // transformers' ScaledWordEmbedding: torch.tensor(hidden_size**0.5) cast to the weights' dtype.
    embed_scale_ = mx::astype(mx::array(static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size)))), act_dtype);
  }
  // Tied: the embeddings serve as the head (an equal saved lm_head.weight is dropped, see the constructor).
  std::optional<layers::Linear> head;
  std::optional<mx::array> head_bias;
  if (!c.tie_word_embeddings)
    head = layers::Linear::load(weights, "lm_head", c.hidden_size, c.vocab_size, o.lm_head_bias);
  else if (o.lm_head_bias)  // ernie4_5_moe: the tied head keeps its own bias
    head_bias = layers::take(weights, "lm_head.bias", {c.vocab_size});
  // Keep only what the model reads (a tied checkpoint may still carry lm_head.weight, GGUF files
  // carry extra tensors), so parameters() lists real parameters and unused data is never loaded.
  WeightMap kept;
  for (auto& n : used.names()) kept.insert_or_assign(n, weights.at(n));
  embed_tokens_ = std::move(embed);
  embed_positions_ = std::move(positions);
  per_layer_inputs_ = std::move(per_layer);
  last_embed_.reset();
  blocks_ = std::move(blocks);
  norm_ = std::move(norm);
  lm_head_ = std::move(head);
  tied_head_bias_ = std::move(head_bias);
  weights_ = std::move(kept);
}

void DecoderModel::set_parameters(const WeightMap& updates, bool allow_new) {
  WeightMap next = weights_;
  for (auto& [name, value] : updates) {
    auto it = next.find(name);
    if (it == next.end()) {
      if (!allow_new) fail("model", "unknown parameter '" + name + "'");
      next.insert_or_assign(name, value);
      continue;
    }
    if (it->second.shape() != value.shape()) fail("model", "parameter '" + name + "' must keep its shape");
    it->second = value;
  }
  build(next);
}

void DecoderModel::shard(const mx::distributed::Group& group) {
  if (group.size() == 1) return;
  if (tp_) fail("distributed", "the model is already sharded");
  // The per-head sinks and the experts' biases have no split here yet; gemma4_text's layers differ in width
  // (ModelConfig::layer_head_dims), which the plan does not split yet; lfm2's convolutions have no split yet.
  // qwen3_next's gated delta nets neither, nor its gated attention output ([q; gate] rows per head).
  if (options_.attention.sinks || options_.moe.gpt_oss || !config_.layer_head_dims.empty() ||
      std::find(config_.conv_layers.begin(), config_.conv_layers.end(), true) != config_.conv_layers.end() ||
      !config_.linear_layers.empty() || config_.attention_output_gate)
    fail("distributed", "tensor-parallel generation of " + config_.model_type + " is not supported");
  auto plan = shard::make_plan(config_, weights_, group.rank(), group.size(), options_.moe.mixtral_names);
  auto sliced = shard::slice_weights(weights_, config_, plan, options_.moe.mixtral_names);
  std::vector<mx::array> copies;
  for (auto& [name, a] : sliced) copies.push_back(a);
  mx::eval(copies);  // materialised now, so the whole tensors can be freed
  tp_ = TensorParallel{group, plan};
  try {
    build(sliced);
  } catch (...) {
    tp_.reset();
    throw;
  }
}

KVCacheList DecoderModel::make_caches() const {
  KVCacheList caches;
  for (const auto& b : blocks_) {
    if (b.conv) {  // the convolution's last K - 1 inputs
      caches.push_back(std::make_unique<RecurrentCache>(std::vector<mx::Shape>{{b.conv->kernel - 1, b.conv->hidden}}));
    } else if (b.delta) {  // those, and the delta rule's state
      const auto& d = *b.delta;
      caches.push_back(std::make_unique<RecurrentCache>(
          std::vector<mx::Shape>{{d.kernel - 1, d.conv_channels()}, {d.value_heads, d.key_dim, d.value_dim}}));
    } else {
      caches.push_back(std::make_unique<StandardKVCache>());
    }
  }
  return caches;
}

mx::array DecoderModel::embed(const mx::array& tokens) const {
  if (tokens.ndim() != 2) fail("model", "token ids must be a [batch, length] array");
  auto ids = mx::astype(tokens, mx::int32);
  // Gemma4Model.forward: placeholder tokens of images, videos and audio are looked up as the pad token (their
  // features, which mlxgp does not compute, would replace the embeddings).
  for (int m : config_.multimodal_token_ids)
    ids = mx::where(mx::equal(ids, mx::array(m, mx::int32)), mx::array(config_.multimodal_pad_id, mx::int32), ids);
  auto e = embed_tokens_(ids);
  if (embed_scale_) e = mx::multiply(e, mx::astype(*embed_scale_, e.dtype()));
  if (per_layer_inputs_) last_embed_.emplace(e, ids);  // for per_layer_inputs()
  return e;
}

mx::array DecoderModel::forward_embeddings(const mx::array& embeddings, KVCacheList& caches) {
  auto h = hidden_states(embeddings, caches);
  return head(h, last_offset_);
}

mx::array DecoderModel::forward_embeddings_last(const mx::array& embeddings, KVCacheList& caches, int n) {
  if (embeddings.ndim() == 3 && (n <= 0 || n > embeddings.shape(1)))
    fail("model", "forward_last: n must be in [1, " + std::to_string(embeddings.shape(1)) + "]");
  auto h = hidden_states(embeddings, caches);
  const int T = h.shape(1);
  return head(mx::slice(h, {0, T - n, 0}, h.shape()), last_offset_ + T - n);
}

mx::array DecoderModel::lm_head(const mx::array& hidden) const {
  auto raw = lm_head_ ? (*lm_head_)(hidden) : embed_tokens_.as_linear(hidden);
  if (tied_head_bias_) raw = mx::add(raw, mx::astype(*tied_head_bias_, raw.dtype()));
  auto logits = mx::astype(raw, mx::float32);
  if (auto cap = config_.final_logit_softcapping) {  // gemma2: cap * tanh(logits / cap)
    auto capv = mx::array(*cap);
    logits = mx::multiply(mx::tanh(mx::divide(logits, capv)), capv);
  }
  if (config_.logits_scaling != 1.0f) logits = mx::divide(logits, mx::array(config_.logits_scaling));  // granite
  if (config_.logit_scale) logits = mx::multiply(logits, mx::array(*config_.logit_scale));             // cohere
  return logits;
}

mx::array DecoderModel::head(const mx::array& h, int offset) {
  auto logits = lm_head(h);
  if (hooks().wants(HookPoint::Logits))
    logits = hooks().run({HookPoint::Logits, -1, offset, hooks().prompt_length()}, logits, *this);
  return logits;
}

mx::array DecoderModel::per_layer_inputs(const mx::array& embeddings) const {
  if (!last_embed_ || last_embed_->first.id() != embeddings.id())
    fail("model", config_.model_type +
                      "'s per-layer inputs (hidden_size_per_layer_input) need the token ids: run it from token ids, "
                      "not from embeddings");
  const auto& p = *per_layer_inputs_;
  const int B = embeddings.shape(0), T = embeddings.shape(1), L = config_.num_hidden_layers,
            P = config_.per_layer_input_size;
  auto scalar = [](double v, const mx::array& like) { return mx::array(static_cast<float>(v), like.dtype()); };
  // Gemma4TextModel.get_per_layer_inputs: the token's rows times sqrt(P) (its scaled embedding's own scale).
  auto tokens = p.table(last_embed_->second);
  tokens = mx::reshape(mx::multiply(tokens, scalar(std::sqrt(static_cast<double>(P)), tokens)), {B, T, L, P});
  // project_per_layer_inputs: norm(projection(embeddings) / sqrt(hidden)), then (that + tokens) / sqrt(2).
  auto projected = p.projection(embeddings);
  projected = mx::multiply(projected, scalar(1.0 / std::sqrt(static_cast<double>(config_.hidden_size)), projected));
  projected = p.norm(mx::reshape(projected, {B, T, L, P}));
  return mx::multiply(mx::add(projected, tokens), scalar(1.0 / std::sqrt(2.0), projected));
}

mx::array DecoderModel::block(const Block& b, const mx::array& x, KVCache& cache, const AttentionMask* mask,
                              layers::SharedKV* shared, const mx::array* per_layer) const {
  using Norms = DecoderOptions::Norms;
  const auto norms = options_.norms;
  auto residual = [&](const mx::array& r, const mx::array& y) {  // granite: residual + y * multiplier
    const float m = config_.residual_multiplier;
    return mx::add(r, m == 1.0f ? y : mx::multiply(y, mx::astype(mx::array(m), y.dtype())));
  };
  if (norms == Norms::Pre && config_.residual_multiplier == 1.0f) {
    // x + attention(norm(x)), then h + mlp(norm(h)), with the norms and adds inside the products' nodes
    // where the weights allow (layers::PreNormResidual).
    auto h = b.recurrent() ? mx::add(x, b.mix((*b.input_norm)(x), cache))
                           : b.attention(x, cache, mask, {&*b.input_norm, &x});
    if (b.moe) return mx::add(h, (*b.moe)((*b.post_attention_norm)(h)));
    return (*b.mlp)(h, {&*b.post_attention_norm, &h});
  }
  if (norms == Norms::Parallel || norms == Norms::ParallelTwo) {  // transformers' cohere: residual + attention + mlp
    auto n = (*b.input_norm)(x);
    auto a = b.recurrent() ? b.mix(n, cache) : b.attention(n, cache, mask);
    const auto m = norms == Norms::ParallelTwo ? (*b.post_attention_norm)(x) : n;  // gpt_neox: its own norm of x
    return residual(residual(x, a), b.moe ? (*b.moe)(m) : (*b.mlp)(m));
  }
  const auto in = b.input_norm ? (*b.input_norm)(x) : x;
  auto a = b.recurrent() ? b.mix(in, cache) : b.attention(in, cache, mask, {}, shared);
  if (norms != Norms::Pre) a = (*b.post_attention_norm)(a);
  auto h = residual(x, a);
  const auto& pre_mlp = norms == Norms::Pre ? b.post_attention_norm : b.pre_feedforward_norm;
  auto f_in = pre_mlp ? (*pre_mlp)(h) : h;
  std::optional<mx::array> f;
  if (b.moe && b.mlp) {  // gemma4_text's Gemma4TextDecoderLayer: the MLP and the experts side by side
    auto dense = (*b.post_mlp_norm)((*b.mlp)(f_in));
    f = mx::add(dense, (*b.post_experts_norm)((*b.moe)((*b.pre_experts_norm)(h), h)));
  } else {
    f = b.moe ? (*b.moe)(f_in) : (*b.mlp)(f_in);
  }
  if (norms != Norms::Pre) f = (*b.post_feedforward_norm)(*f);
  auto out = residual(h, *f);
  if (b.per_layer_input) {  // Gemma4TextDecoderLayer: the layer's own input gates a projection back into the stream
    const auto& l = *b.per_layer_input;
    auto g = mx::multiply(layers::activation(l.act, l.gate(out)), *per_layer);
    out = mx::add(out, l.norm(l.projection(g)));
  }
  return b.layer_scalar ? mx::multiply(out, mx::astype(*b.layer_scalar, out.dtype())) : out;
}

mx::array DecoderModel::add_positions(const mx::array& h, const KVCache& cache) const {
  const int T = h.shape(1), offset = cache.offset();
  // As transformers' generate: each left-padded row counts from its first token (attention_mask cumsum - 1),
  // its padding at position 0 (those slots are never attended to).
  const auto rows = cache.left_padding().empty() ? std::vector<int>{} : cache.row_offsets();
  int last = offset + T - 1;
  if (!rows.empty()) last = *std::max_element(rows.begin(), rows.end()) + T - 1;
  if (last >= config_.max_position_embeddings)
    fail("model", "position " + std::to_string(last) + " is past the model's " +
                      std::to_string(config_.max_position_embeddings) +
                      " learned positions (n_positions / max_position_embeddings)");
  mx::array ids = mx::reshape(mx::arange(offset, offset + T, mx::int32), {1, T});
  if (!rows.empty()) {
    const int n = static_cast<int>(rows.size());
    auto starts = mx::reshape(mx::array(rows.data(), {n}, mx::int32), {n, 1});
    ids = mx::maximum(mx::add(starts, mx::reshape(mx::arange(T, mx::int32), {1, T})), mx::array(0, mx::int32));
  }
  auto p = (*embed_positions_)(ids);
  return mx::add(h, mx::astype(p, h.dtype()));
}

mx::array DecoderModel::hidden_states(const mx::array& embeddings, KVCacheList& caches) {
  if (embeddings.ndim() != 3 || embeddings.shape(2) != config_.hidden_size)
    fail("model", "embeddings must be [batch, length, hidden_size]");
  if (caches.size() != blocks_.size())
    fail("model", "expected " + std::to_string(blocks_.size()) + " caches, got " + std::to_string(caches.size()));
  if (embeddings.shape(1) == 0) fail("model", "cannot run the model on an empty sequence");
  const int offset = caches[0]->offset();
  last_offset_ = offset;
  const HookList& hooks = this->hooks();
  const bool hooked = !hooks.empty();
  const int prompt_length = hooks.prompt_length();
  auto h = embeddings;
  // granite multiplies whatever enters the stack (its inputs_embeds too).
  if (config_.embedding_multiplier != 1.0f)
    h = mx::multiply(h, mx::astype(mx::array(config_.embedding_multiplier), h.dtype()));
  // Embedding hooks may change the length (soft prompts prepend virtual tokens).
  if (hooked && hooks.wants(HookPoint::Embeddings))
    h = hooks.run({HookPoint::Embeddings, -1, offset, prompt_length}, h, *this);
  const int T = h.shape(1);
  if (T == 0 || h.ndim() != 3 || h.shape(2) != config_.hidden_size)
    fail("hooks", "an embeddings hook must return [batch, length >= 1, hidden_size]");
  // gemma4_text: each layer's input of each token, from the token ids and the embeddings before any hook.
  std::optional<mx::array> per_layer;
  if (per_layer_inputs_) {
    per_layer = per_layer_inputs(embeddings);
    if (T != embeddings.shape(1))
      fail("hooks", "an embeddings hook that changes the length (a soft prompt) cannot run with " + config_.model_type +
                        "'s per-layer inputs");
  }
  layers::SharedKV shared[2];  // gemma4_text: the keys and values of the last sliding / full layer before the sharing
  // After the hooks: transformers' GPT2Model adds wpe to inputs_embeds, soft-prompt tokens included.
  if (embed_positions_) h = add_positions(h, *caches[0]);
  // One mask for every layer, from the first layer's cache before it is updated (mlx-lm's models
  // ask cache[0].make_mask once per forward); the standard cache's mask costs no array op.
  // (lfm2, qwen3_next: the first attention layer's, since a recurrent layer's cache masks nothing.)
  size_t first_attention = 0;
  while (first_attention + 1 < blocks_.size() && blocks_[first_attention].recurrent()) ++first_attention;
  const AttentionMask mask = caches[first_attention]->make_mask(T);
  // Sliding-window layers (config.sliding_layers) get one shared windowed mask, chunked ones (config.chunked_layers)
  // one chunked mask: `local` on the `locals` layers (no architecture has both).
  std::optional<AttentionMask> local;
  const auto any = [](const std::vector<bool>& v) { return std::find(v.begin(), v.end(), true) != v.end(); };
  const bool sliding = config_.sliding_window && any(config_.sliding_layers);
  const bool chunked = config_.attention_chunk_size && any(config_.chunked_layers);
  const auto& locals = sliding ? config_.sliding_layers : config_.chunked_layers;
  if (sliding || chunked) {
    const int span = sliding ? *config_.sliding_window : *config_.attention_chunk_size;
    if (offset + T > span && (dynamic_cast<const RotatingKVCache*>(caches[first_attention].get()) ||
                              dynamic_cast<const BatchRotatingKVCache*>(caches[first_attention].get())))
      fail("model", std::string(sliding ? "sliding-window attention (sliding_window "
                                        : "chunked attention (attention_chunk_size ") +
                        std::to_string(span) + ") with a rotating KV cache (max_kv_size) is not supported past the " +
                        (sliding ? "window" : "first chunk"));
    local = sliding ? sliding_window_mask(offset, T, span, mask)
                    : chunked_mask(offset, T, span, mask, caches[0]->left_padding());
  }
  const auto fused = fused_decode(h, caches, mask, local);
  if (fused) h = *fused;
  for (size_t i = 0; i < blocks_.size() && !fused; ++i) {
    const auto& b = blocks_[i];
    const AttentionMask* m = local && i < locals.size() && locals[i] ? &*local : &mask;
    std::optional<mx::array> layer_input;
    if (per_layer) {
      const int B = h.shape(0), P = config_.per_layer_input_size, l = static_cast<int>(i);
      layer_input = mx::reshape(mx::slice(*per_layer, {0, 0, l, 0}, {B, T, l + 1, P}), {B, T, P});
    }
    h = block(b, h, *caches[i], m, b.kv_slot >= 0 ? &shared[b.kv_slot] : nullptr,
              layer_input ? &*layer_input : nullptr);
    const int layer = static_cast<int>(i);
    if (hooked && hooks.wants(HookPoint::Residual, layer))
      h = hooks.run({HookPoint::Residual, layer, offset, prompt_length}, h, *this);
  }
  h = norm_(h);
  if (hooked && hooks.wants(HookPoint::FinalHidden))
    h = hooks.run({HookPoint::FinalHidden, -1, offset, prompt_length}, h, *this);
  return h;
}

}  // namespace mlxgp
