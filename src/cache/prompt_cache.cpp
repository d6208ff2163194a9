// Prompt caches on disk: standard KV caches of a prefix as safetensors, with the token ids and the
// model identity checked on load.
#include "mlxgp/prompt_cache.h"

#include "mlxgp/cache_options.h"

#include "cache/prefill.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/recurrent_cache.h"
#include "mlxgp/safetensors_io.h"
#include "models/layers.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

constexpr const char* kFormat = "mlxgp-prompt-cache";
constexpr const char* kVersion = "2";  // 2: the identity covers config.json settings

std::string dtype_name(mx::Dtype d) {
  std::ostringstream s;
  s << d;
  return s.str();
}

// FNV-1a over the float32 values of a tensor: cheap, and any weight change shows.
uint64_t digest(const mx::array& a, uint64_t h) {
  auto f = mx::contiguous(mx::astype(a, mx::float32));
  mx::eval(f);
  const auto* p = reinterpret_cast<const unsigned char*>(f.data<float>());
  for (size_t i = 0; i < f.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}

std::string hex(uint64_t h) {
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

// The first layer's key projection (or, in a model without one, its first projection by name) as stored:
// weight, and scales / biases or a llama.cpp block type where quantized. Small, so hashing it costs little.
uint64_t projection_digest(const WeightMap& params) {
  std::vector<std::string> names;
  for (auto& [name, _] : params)
    if (name.starts_with("model.layers.0.") && name.find("norm") == std::string::npos &&
        name.find(".lora_") == std::string::npos)
      names.push_back(name);
  std::sort(names.begin(), names.end());
  auto stem = [](const std::string& n) { return n.substr(0, n.rfind('.')); };
  std::string pick = names.empty() ? "" : stem(names.front());
  for (const char* preferred : {"model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.qkv_proj"})
    if (std::any_of(names.begin(), names.end(), [&](const std::string& n) { return stem(n) == preferred; })) {
      pick = preferred;
      break;
    }
  uint64_t h = 1469598103934665603ULL;
  for (const auto& name : names) {
    if (stem(name) != pick) continue;
    const auto& a = params.at(name);
    std::ostringstream d;
    d << name << ' ' << a.dtype();
    for (int dim : a.shape()) d << ' ' << dim;
    for (unsigned char ch : d.str()) h = (h ^ ch) * 1099511628211ULL;
    auto c = mx::contiguous(a);  // the stored bytes: packed integers do not all survive a float32 cast
    mx::eval(c);
    const auto* p = reinterpret_cast<const unsigned char*>(c.data<void>());
    for (size_t i = 0; i < c.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ULL;
  }
  return h;
}

// Every config.json setting that changes what a prompt's keys and values are (rotary frequencies and
// scaling, norms' epsilon, activations, windows, attention scales, experts), so a cache made under one is
// refused under another with the same weights (a rope_theta or rope_scaling edit, a yarn switch).
uint64_t config_digest(const ModelConfig& c) {
  std::ostringstream d;
  d << std::hexfloat;
  auto rope = [&](const std::optional<RopeScaling>& r) {
    if (!r) return void(d << " -");
    d << ' ' << r->rope_type << ' ' << r->factor << ' ' << r->low_freq_factor << ' ' << r->high_freq_factor << ' '
      << r->original_max_position_embeddings << ' ' << r->attention_factor.value_or(-1.0f);
    for (float f : r->short_factor) d << ' ' << f;
    d << " /";
    for (float f : r->long_factor) d << ' ' << f;
    if (r->short_mscale) d << " / " << *r->short_mscale << ' ' << r->long_mscale.value_or(-1.0f);  // (phimoe's)
    // Yarn's own fields only for yarn: the digests of caches saved under the other types stay as they were.
    if (r->rope_type == "yarn")
      d << " / " << r->beta_fast << ' ' << r->beta_slow << ' ' << r->mscale.value_or(-1.0f) << ' '
        << r->mscale_all_dim.value_or(-1.0f) << ' ' << r->truncate;
  };
  auto opt = [&](const auto& v) {
    if (v) d << ' ' << *v;
    else d << " -";
  };
  d << c.num_attention_heads << ' ' << c.intermediate_size << ' ' << c.rms_norm_eps << ' ' << c.rope_theta;
  rope(c.rope_scaling);
  d << ' ' << c.max_position_embeddings << ' ' << c.attention_bias << ' ' << c.mlp_bias << ' ' << c.hidden_act;
  opt(c.sliding_window);
  for (bool b : c.sliding_layers) d << b;
  d << ' ' << c.partial_rotary_factor;
  opt(c.sliding_rope_theta);
  rope(c.sliding_rope_scaling);
  opt(c.query_pre_attn_scalar);
  opt(c.attn_logit_softcapping);
  d << ' ' << c.embedding_multiplier << ' ' << c.residual_multiplier;
  opt(c.attention_multiplier);
  d << ' ';
  for (bool b : c.rope_layers) d << b;
  d << ' ' << c.scale_attn_weights << c.scale_attn_by_inverse_layer_idx;
  opt(c.qkv_bias);
  d << ' ' << c.use_qk_norm << c.parallel_residual << c.sigmoid_routing << ' ' << c.n_group << ' ' << c.topk_group
    << ' ' << c.routed_scaling_factor;
  d << ' ' << c.num_experts << ' ' << c.num_experts_per_tok << ' ' << c.moe_intermediate_size << ' '
    << c.shared_expert_intermediate_size << ' ' << c.norm_topk_prob << ' ' << c.decoder_sparse_step;
  for (int l : c.mlp_only_layers) d << ' ' << l;
  if (c.sparsemixer) d << " sparsemixer " << c.router_jitter_noise;  // (phimoe's; other digests as they were)
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char ch : d.str()) h = (h ^ ch) * 1099511628211ULL;
  return h;
}

std::string layer_key(int i, const std::string& what) { return "layers." + std::to_string(i) + "." + what; }

}  // namespace

std::string model_identity(Model& model) {
  const auto& c = model.config();
  auto& params = model.parameters();
  std::ostringstream s;
  s << c.model_type << " layers=" << c.num_hidden_layers << " hidden=" << c.hidden_size
    << " kv_heads=" << c.num_key_value_heads << " head_dim=" << c.head_dim << " vocab=" << c.vocab_size;
  // The norms are small and never quantized; their dtype is the activation dtype the caches hold.
  uint64_t h = 1469598103934665603ULL;
  std::string dtype;
  for (const std::string name :
       {"model.norm.weight", "model.final_layernorm.weight", "model.layers.0.input_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight"}) {
    auto it = params.find(name);
    if (it == params.end()) continue;
    if (dtype.empty()) dtype = dtype_name(it->second.dtype());
    h = digest(it->second, h);
  }
  s << " dtype=" << dtype << " norms=" << hex(h);
  // Quantizing leaves the norms as they were: one projection's stored tensors (names, dtypes, shapes and
  // values) tell a Q4 GGUF, an MLX 4-bit folder and the float weights apart, and weights fine-tuned alike.
  s << " weights=" << hex(projection_digest(params)) << " config=" << hex(config_digest(c));
  // llama.cpp's arithmetic (LoadOptions::int8_activations) computes other keys and values.
  for (auto& [name, _] : params)
    if (name.ends_with(".int8_activations")) {
      s << " int8_activations";
      break;
    }
  // LoRA adapters change every cached key and value: their names and values are part of the identity
  // (small tensors), so a cache made without them (or with others) is refused.
  std::vector<std::string> adapters;
  for (auto& [name, _] : params)
    if (name.find(".lora_") != std::string::npos) adapters.push_back(name);
  if (!adapters.empty()) {
    std::sort(adapters.begin(), adapters.end());
    uint64_t a = 1469598103934665603ULL;
    for (auto& name : adapters) {
      for (unsigned char ch : name) a = (a ^ ch) * 1099511628211ULL;
      a = digest(params.at(name), a);
    }
    s << " lora=" << hex(a);
  }
  return s.str();
}

namespace {

// Why a cache saved by a model of identity `saved` cannot serve `model` ("" when it can), worded to
// follow the cache's name.
std::string identity_problem(const std::string& saved, const std::string& identity) {
  if (saved == identity) return "";
  auto base = [](const std::string& id) { return id.substr(0, id.find(" lora=")); };
  auto weights = [](const std::string& id) { return id.substr(0, id.find(" config=")); };
  if (weights(saved) == weights(identity) && base(saved) != base(identity))
    return "was made by these weights under other config.json settings (rotary embedding, norms, attention "
           "or experts); make it again with this config";
  if (base(saved) == base(identity))
    return std::string("was made with other LoRA adapters than this model has (") +
           (identity.find(" lora=") == std::string::npos ? "none" : "adapters") +
           " now); make it again with the same adapters";
  return "was made by another model (" + saved + "; this model is " + identity + ")";
}

}  // namespace

void check_prompt_cache_options(const PromptCache& cache, const CacheOptions& o) {
  if (o.max_kv_size)
    fail("prompt-cache", "a prompt cache cannot be combined with max_kv_size (it holds a standard cache)");
  const int cached = static_cast<int>(cache.token_ids.size());
  // kv_bits quantizes the caches after every prefill step from quantized_kv_start on (from the first position
  // when it is unset), and each step attends to what the earlier ones left: only positions made before any
  // quantization are the standard ones the saved cache holds.
  if (o.kv_bits && (!o.quantized_kv_start || *o.quantized_kv_start < cached))
    fail("prompt-cache", "the prompt cache holds " + std::to_string(cached) +
                             " standard positions; with kv_bits, quantized_kv_start must be at least that many "
                             "(a generation would have quantized them)");
  const auto want = o.kv_cache_dtype ? kv_cache_dtype_named(*o.kv_cache_dtype) : std::nullopt;  // validated before
  if (!want || cache.caches.empty()) return;
  auto* s = dynamic_cast<const StandardKVCache*>(cache.caches.front().get());
  auto kv = s ? s->fetch() : std::nullopt;
  if (kv && kv->first.dtype() != *want)
    fail("prompt-cache", "the prompt cache stores its keys in the model's dtype, not the kv_cache_dtype " +
                             *o.kv_cache_dtype + " this generation asks for");
}

void check_prompt_cache_use(const PromptCache& cache, Model& model) {
  // Hooks run at prefill, so a cache made without them holds other keys and values (steering on
  // prompt positions, soft prompts); the identity does not describe hooks, so they are refused.
  if (model.hooks().alter_prompt_states(model.config().num_hidden_layers))
    fail("prompt-cache",
         "a saved prompt cache cannot be used with hooks that change prompt positions (steering "
         "on prompt positions, soft prompts): steer generated positions only or prefill the prompt");
  if (auto why = identity_problem(cache.model_identity, model_identity(model)); !why.empty())
    fail("prompt-cache", "the saved prompt cache " + why);
}

PromptCache make_prompt_cache(Model& model, const std::vector<int>& ids, int chunk_size) {
  if (ids.empty()) fail("prompt-cache", "the prompt is empty");
  if (chunk_size < 1) fail("prompt-cache", "chunk size must be >= 1");
  const auto& c = model.config();
  for (int id : ids)
    if (id < 0 || id >= c.vocab_size)
      fail("prompt-cache",
           "token id " + std::to_string(id) + " is outside the vocabulary (size " + std::to_string(c.vocab_size) + ")");
  if (c.max_position_embeddings > 0 && static_cast<int>(ids.size()) >= c.max_position_embeddings)
    fail("prompt-cache", "the prompt has " + std::to_string(ids.size()) + " tokens, the model's context is " +
                             std::to_string(c.max_position_embeddings));
  if (model.hooks().alter_prompt_states(c.num_hidden_layers))
    fail("prompt-cache",
         "cannot save a prompt cache with hooks that change prompt positions attached (steering "
         "on prompt positions, soft prompts): a generation could not tell");
  PromptCache out;
  out.token_ids = ids;
  out.caches = model.make_caches();
  out.model_identity = model_identity(model);
  const int n = static_cast<int>(ids.size());
  // The prefill a generation runs (prefill_tokens), so the cached keys/values are the ones a generation
  // without the cache computes.
  mx::eval(
      prefill_tokens(model, out.caches, mx::array(ids.data(), {1, n}, mx::int32), 0, {{}, chunk_size, chunk_size}));
  return out;
}

void save_prompt_cache(const std::string& path, const PromptCache& cache) {
  if (cache.token_ids.empty()) fail("prompt-cache", "nothing to save: the cache holds no tokens");
  std::unordered_map<std::string, mx::array> tensors;
  const int n = static_cast<int>(cache.token_ids.size());
  tensors.emplace("token_ids", mx::array(cache.token_ids.data(), {n}, mx::int32));
  for (size_t i = 0; i < cache.caches.size(); ++i) {
    if (auto* r = dynamic_cast<const RecurrentCache*>(cache.caches[i].get())) {  // a recurrent layer's state
      if (r->offset() != n || r->rows() != 1)
        fail("prompt-cache", "layer " + std::to_string(i) + " does not hold the " + std::to_string(n) + " tokens");
      for (int slot = 0; slot < r->slots(); ++slot)
        tensors.emplace(layer_key(static_cast<int>(i), "state." + std::to_string(slot)),
                        mx::contiguous(r->state(slot).value()));
      continue;
    }
    auto* s = dynamic_cast<const StandardKVCache*>(cache.caches[i].get());
    if (!s) fail("prompt-cache", "only standard KV caches and recurrent states can be saved");
    auto kv = s->fetch();
    if (!kv || s->offset() != n)
      fail("prompt-cache", "layer " + std::to_string(i) + " does not hold the " + std::to_string(n) + " tokens");
    if (kv->first.shape(0) != 1) fail("prompt-cache", "only one batch row can be saved");
    tensors.emplace(layer_key(static_cast<int>(i), "keys"), mx::contiguous(kv->first));
    tensors.emplace(layer_key(static_cast<int>(i), "values"), mx::contiguous(kv->second));
  }
  save_safetensors_atomic(path, tensors,
                          {{"format", kFormat},
                           {"version", kVersion},
                           {"cache_type", "standard"},
                           {"num_layers", std::to_string(cache.caches.size())},
                           {"num_tokens", std::to_string(n)},
                           {"model_identity", cache.model_identity}},
                          "prompt-cache");
}

PromptCache load_prompt_cache(const std::string& path, Model& model) {
  auto file = load_safetensors_file(path);  // throws [safetensors] for missing / truncated / corrupt files
  auto meta = [&](const std::string& key) -> std::string {
    auto it = file.metadata.find(key);
    return it == file.metadata.end() ? std::string() : it->second;
  };
  const std::string where = "'" + path + "'";
  if (meta("format") != kFormat) fail("prompt-cache", where + " is not an mlxgp prompt cache (no format metadata)");
  if (meta("version") != kVersion)
    fail("prompt-cache", where + " has version '" + meta("version") + "', this build reads version " + kVersion);
  if (meta("cache_type") != "standard")
    fail("prompt-cache", where + " holds a '" + meta("cache_type") + "' cache; only 'standard' is supported");
  const std::string identity = model_identity(model);
  if (auto why = identity_problem(meta("model_identity"), identity); !why.empty())
    fail("prompt-cache", where + " " + why);
  const auto& c = model.config();
  auto tensor = [&](const std::string& key) -> mx::array& {
    auto it = file.tensors.find(key);
    if (it == file.tensors.end()) fail("prompt-cache", where + " lacks tensor '" + key + "'");
    return it->second;
  };
  auto& ids_t = tensor("token_ids");
  if (ids_t.ndim() != 1 || ids_t.size() == 0 || ids_t.dtype() != mx::int32)
    fail("prompt-cache", where + ": token_ids must be a non-empty int32 vector");
  const int n = static_cast<int>(ids_t.size());
  if (meta("num_tokens") != std::to_string(n) || meta("num_layers") != std::to_string(c.num_hidden_layers))
    fail("prompt-cache", where + ": the metadata does not match the tensors");
  // Two tensors per attention layer (keys, values), one per state slot of a recurrent one.
  const KVCacheList kinds = model.make_caches();
  size_t expected = 1;
  for (const auto& k : kinds)
    expected += dynamic_cast<const RecurrentCache*>(k.get()) ? static_cast<const RecurrentCache&>(*k).slots() : 2;
  if (file.tensors.size() != expected)
    fail("prompt-cache",
         where + " holds " + std::to_string(file.tensors.size()) + " tensors, expected " + std::to_string(expected));
  PromptCache out;
  out.model_identity = identity;
  mx::eval(ids_t);
  out.token_ids.assign(ids_t.data<int32_t>(), ids_t.data<int32_t>() + n);
  for (int id : out.token_ids)
    if (id < 0 || id >= c.vocab_size)
      fail("prompt-cache", where + ": token id " + std::to_string(id) + " is outside the vocabulary");
  std::vector<mx::array> state;
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    if (auto* kind = dynamic_cast<const RecurrentCache*>(kinds[i].get())) {
      // Each slot as the layer makes it (lfm2's convolution: its last conv_L_cache - 1 inputs; qwen3_next's delta
      // rule: those and the state), one batch row.
      auto cache = std::make_unique<RecurrentCache>(*kind);
      for (int slot = 0; slot < kind->slots(); ++slot) {
        const std::string key = layer_key(i, "state." + std::to_string(slot));
        mx::Shape want = kind->slot_shape(slot);
        want.insert(want.begin(), 1);
        auto& a = tensor(key);
        if (a.shape() != want || !mx::issubdtype(a.dtype(), mx::floating))
          fail("prompt-cache", where + ": " + key + " must be floating " + layers::shape_str(want));
        require_finite(a, "prompt-cache", where + ": " + key);
        cache->set_state(slot, a);
        state.push_back(a);
      }
      cache->advance(n);
      out.caches.push_back(std::move(cache));
      continue;
    }
    // (gemma4_text's layers differ in width: ModelConfig::layer_head_dims)
    const int heads = layer_kv_heads(c, i), dim = layer_head_dim(c, i);
    const mx::Shape want = {1, heads, n, dim};
    auto& k = tensor(layer_key(i, "keys"));
    auto& v = tensor(layer_key(i, "values"));
    if (k.shape() != want || v.shape() != want || k.dtype() != v.dtype() || !mx::issubdtype(k.dtype(), mx::floating))
      fail("prompt-cache", where + ": layer " + std::to_string(i) + " keys/values must be floating [1, " +
                               std::to_string(heads) + ", " + std::to_string(n) + ", " + std::to_string(dim) + "]");
    // NaN or infinite keys/values (a corrupt file) would decode garbage with exit 0.
    require_finite(k, "prompt-cache", where + ": layer " + std::to_string(i) + " keys");
    require_finite(v, "prompt-cache", where + ": layer " + std::to_string(i) + " values");
    auto cache = std::make_unique<StandardKVCache>();
    cache->update(k, v);
    out.caches.push_back(std::move(cache));
  }
  for (auto& cache : out.caches)
    if (auto* s = dynamic_cast<StandardKVCache*>(cache.get())) {
      auto kv = s->fetch();
      state.insert(state.end(), {kv->first, kv->second});
    }
  mx::eval(state);  // read the file now, not lazily in the middle of a generation
  return out;
}

KVCacheList clone_caches(const PromptCache& cache) {
  KVCacheList out;
  for (auto& c : cache.caches) out.push_back(c->clone());
  return out;
}

void check_prompt_prefix(const PromptCache& cache, const std::vector<int>& prompt_ids) {
  const size_t n = cache.token_ids.size();
  if (prompt_ids.size() < n)
    fail("prompt-cache", "the prompt has " + std::to_string(prompt_ids.size()) + " tokens, fewer than the " +
                             std::to_string(n) + " cached tokens");
  auto diff = std::mismatch(cache.token_ids.begin(), cache.token_ids.end(), prompt_ids.begin());
  if (diff.first != cache.token_ids.end())
    fail("prompt-cache", "the prompt does not start with the cached tokens (first difference at token " +
                             std::to_string(diff.first - cache.token_ids.begin()) + ")");
}

}  // namespace mlxgp
