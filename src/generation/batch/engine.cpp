// BatchEngine: continuous batching over the shared decoding core. Requests wait in a queue; between
// decode steps the waiting ones are prefilled alone (as generate() prefills them) and their caches join
// the running batch aligned on the right; one forward of [rows, 1] per step serves every running row;
// a request whose rows are all finished (or that is cancelled) leaves and its rows are dropped.
#include "mlxgp/batch_engine.h"

#include <algorithm>
#include <chrono>

#include <mlx/memory.h>
#include <mlx/mlx.h>

#include "generation/batch/prefill_pacer.h"
#include "generation/batch/speculative_lane.h"
#include "generation/beam/searches.h"
#include "generation/speculative/speculative_run.h"
#include "generation/core/decode_group.h"
#include "cache/prefill.h"
#include "core/fault.h"
#include "generation/core/setup.h"
#include "generation/prompt_budget.h"
#include "mlxgp/batch_cache.h"
#include "mlxgp/cache_options.h"
#include "mlxgp/decode_rows.h"
#include "mlxgp/generator.h"
#include "mlxgp/error.h"
#include "mlxgp/recurrent_cache.h"
#include "mlxgp/prompt_cache.h"

namespace mx = mlx::core;

namespace mlxgp {

struct BatchEngine::BeamRequest {
  int id = 0;
  std::vector<int> prompt;
  GenerationConfig config;
  GeneratorOptions options;
};

struct BatchEngine::Request {
  int id = 0;
  std::vector<int> prompt;
  GenerationConfig config;
  GeneratorOptions options;
  RowTokenCallback on_token;
  RowLogprobsCallback on_logprobs;
  std::unique_ptr<DecodeGroup> group;
  std::unique_ptr<TextStreams> texts;
  std::string prefix_identity;  // non-empty: its rows are stored in the prefix cache when it finishes
  std::optional<Error> error;   // its own step failed: it leaves with this error (read_request_tokens)
};

struct BatchEngine::Prefill {
  std::unique_ptr<Request> request;
  KVCacheList caches;
  int pos = 0;  // prompt tokens in `caches`
  CacheOptions cache;
};

std::string batch_refusal(const GenerationConfig& c, const GeneratorOptions& o, int prompt_tokens) {
  // A quantized cache joins quantized: with quantized_kv_start past the prompt, the row would be
  // quantized when the batch (not the row) reaches that length.
  if (c.kv_bits && c.quantized_kv_start && (prompt_tokens < 0 || *c.quantized_kv_start > prompt_tokens))
    return "kv_bits with a quantized_kv_start beyond the prompt cannot share a batch";
  if (!o.memory_trace_at.empty()) return "memory traces measure one generation and cannot share a batch";
  return {};
}

bool same_cache_kind(const GenerationConfig& a, const GenerationConfig& b) {
  return a.kv_bits == b.kv_bits && (!a.kv_bits || a.kv_group_size == b.kv_group_size) &&
         a.max_kv_size == b.max_kv_size && (!a.max_kv_size || a.kv_keep == b.kv_keep) &&
         a.kv_cache_dtype == b.kv_cache_dtype;
}

BatchEngine::BatchEngine(Model& model, std::shared_ptr<const Tokenizer> tokenizer, BatchEngineOptions options)
    : model_(model), tokenizer_(std::move(tokenizer)), options_(options) {
  if (options_.max_batch_rows < 1) fail("generate", "the batch size must be >= 1");
  beams_ = std::make_unique<beam::BeamBatch>(model_, tokenizer_);
  speculative_ = std::make_unique<SpeculativeLane>(model_, tokenizer_);
  pacer_ = std::make_unique<PrefillPacer>();
}

bool BatchEngine::busy() const {
  return !queue_.empty() || prefilling_ || !running_.empty() || !beam_queue_.empty() || !beams_->empty() ||
         !speculative_->empty();
}

int BatchEngine::prefilling_rows() const { return prefilling_ ? prefilling_->request->group->rows() : 0; }

// A cancelled beam search: its sequences end with nothing (the best hypothesis is only known at the end).
static GenerationResult cancelled_beams(const std::vector<int>& prompt, const GenerationConfig& config) {
  GenerationResult r;
  r.prompt_token_ids = prompt;
  r.stats.prompt_tokens = static_cast<int>(prompt.size());
  r.sequences.resize(config.num_return_sequences);
  for (auto& s : r.sequences) s.finish_reason = FinishReason::Cancelled;
  return r;
}

BatchEngine::~BatchEngine() { settle_pending(); }

std::string BatchEngine::prefix_identity() {
  const ModelConfig& c = model_.config();
  // A stored sequence holds generated positions too, which a later prompt prefills as prompt positions:
  // any hook that may change keys and values (Hook::alters_prompt_states's rule, at every position)
  // rules reuse out, as it rules out a saved prompt cache.
  auto& hooks = model_.hooks();
  if (hooks.wants(HookPoint::Embeddings, -1)) return {};
  for (int l = 0; l + 1 < c.num_hidden_layers; ++l)
    if (hooks.wants(HookPoint::Residual, l)) return {};
  // LongRoPE rotates a whole forward with the factors its largest position picks, so cached positions
  // depend on the length of the prompt they came with (prefill.cpp).
  if (c.rope_scaling && c.rope_scaling->rope_type == "longrope") return {};
  // A recurrent layer's state holds its whole sequence, not positions a shorter prefix could reuse.
  if (has_recurrent_state(model_.make_caches())) return {};
  // The saved prompt cache's identity (architecture, dtype, norms, LoRA adapters): one cache may serve
  // engines over several models.
  return model_identity(model_) + " kv=standard";
}

void BatchEngine::store_prefixes(const Request& r, const KVCacheList& caches, int first_row) {
  if (!options_.prefix_cache || r.prefix_identity.empty() || caches.empty()) return;
  const auto& pad = caches[0]->left_padding();
  for (int i = 0; i < r.group->rows(); ++i) {
    const int row = first_row + i;
    // The row holds the prompt and its fed tokens (the last one too when a queued step fed it); a row
    // that finished before its request goes on being fed tokens that are not its own.
    std::vector<int> tokens = r.prompt;
    const auto& generated = r.group->generated(i);
    tokens.insert(tokens.end(), generated.begin(), generated.end());
    const int held = caches[0]->offset() - (pad.empty() ? 0 : pad.at(row));
    tokens.resize(std::min(static_cast<int>(tokens.size()), held));
    if (tokens.empty()) continue;
    // Storing only saves later prefills: a failure (memory for the copy) must not fail the finished
    // request or cancel() (the server's worker calls it outside the step's error handling).
    try {
      auto kv = copy_row(caches, row, static_cast<int>(tokens.size()));
      if (!kv) return;  // not standard caches
      // (whole heads matter on a tensor-parallel rank alone; elsewhere the stored bytes are exact, also where
      // layers differ in width, gemma4_text's)
      options_.prefix_cache->insert(std::move(tokens), std::move(*kv), r.prefix_identity,
                                    model_.tensor_parallel_group() ? model_.config().num_key_value_heads : 0);
    } catch (const std::exception&) {
      return;
    }
  }
}

void BatchEngine::settle_pending() {
  // A queued step may still be running on MLX's stream: wait for it before its arrays are dropped (a
  // process that exits with our kernels mid-flight on the stream thread corrupts its heap).
  if (!pending_) return;
  mx::synchronize();  // every task of the step, its recorded outputs included
  pending_.reset();
}

int BatchEngine::running_rows() const {
  return sampling_rows() + prefilling_rows() + beams_->rows() + speculative_->rows();
}

int BatchEngine::submit(BatchRequest request) {
  auto r = std::make_unique<Request>();
  auto prepared = prepare_generation(model_, tokenizer_, request.config, std::move(request.options));
  r->config = std::move(prepared.config);  // throws [config] above when invalid
  r->options = std::move(prepared.options);
  // The cache options, the prompt (vocabulary, context, max_length) and the request's rows now, in every
  // lane, so a bad request never enters a queue or a step other requests share.
  validate(cache_options_from(r->config));
  check_decode_rows_fit(
      model_, decode_rows(r->config),
      static_cast<long long>(request.prompt_ids.size()) +
          check_prompt_and_budget(model_.config(), r->config, request.prompt_ids, model_.hooks().added_positions()),
      "rows (num_beams, or num_return_sequences)");
  const int n = static_cast<int>(request.prompt_ids.size());
  if (r->config.use_speculative || r->config.prompt_lookup_num_tokens) {  // the speculative lane
    if (auto why = batch_refusal(r->config, r->options, n); !why.empty()) fail("generate", why);
    if (request.top_logprobs >= 0)
      fail("generate", "speculative and prompt-lookup decoding do not report top_logprobs");
    auto draft = r->config.use_speculative && options_.draft && r->config.draft_model == options_.draft_source
                     ? options_.draft
                     : nullptr;
    draft = speculative::resolve_draft(model_, r->config, r->options, std::move(draft));
    check_processor_vocabulary(model_, r->config, r->options);
    const int id = next_id_++;
    speculative_->add(id, std::move(request.prompt_ids), std::move(r->config), std::move(r->options),
                      std::move(request.on_token), std::move(draft));
    return id;
  }
  if (r->config.num_beams > 1) {  // the beam batch
    if (auto why = batch_refusal(r->config, r->options, n); !why.empty()) fail("generate", why);
    if (request.top_logprobs >= 0)
      fail("generate", "beam search does not report top_logprobs (its tokens are not streamed)");
    check_processor_vocabulary(model_, r->config, r->options);
    auto b = std::make_unique<BeamRequest>(
        BeamRequest{next_id_++, std::move(request.prompt_ids), std::move(r->config), std::move(r->options)});
    const int id = b->id;
    beam_queue_.push_back(std::move(b));
    return id;
  }
  if (auto why = batch_refusal(r->config, r->options, n); !why.empty()) fail("generate", why);
  if (r->options.prefill_chunk_size < 1) fail("generate", "prefill_chunk_size must be >= 1");
  if (r->options.prompt_cache) {
    check_prompt_cache_use(*r->options.prompt_cache, model_);
    check_prompt_cache_options(*r->options.prompt_cache, cache_options_from(r->config));
    check_prompt_prefix(*r->options.prompt_cache, request.prompt_ids);
  }
  r->group = std::make_unique<DecodeGroup>(model_, r->config, r->options);
  r->prompt = std::move(request.prompt_ids);
  r->on_token = std::move(request.on_token);
  if (request.top_logprobs >= 0) {
    r->group->keep_top_logprobs(request.top_logprobs);
    r->on_logprobs = std::move(request.on_logprobs);
  }
  r->texts = std::make_unique<TextStreams>(r->options.tokenizer, r->group->rows());
  r->id = next_id_++;
  const int id = r->id;
  queue_.push_back(std::move(r));
  return id;
}

void BatchEngine::finish(Request& r) {
  auto result = assemble_result(*r.group, *r.texts);
  result.error = r.error;
  done_.emplace(r.id, std::move(result));
  finished_now_.push_back(r.id);
}

void BatchEngine::cancel(int id) {
  if (stepping_) {  // called from a token callback: rows leave once the step is over
    cancels_.push_back(id);
    return;
  }
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if ((*it)->id != id) continue;
    (*it)->group->start((*it)->prompt);  // checked at submit; the result names its prompt
    (*it)->group->cancel();
    finish(**it);
    queue_.erase(it);
    return;
  }
  if (prefilling_ && prefilling_->request->id == id) {
    prefilling_->request->group->cancel();
    finish(*prefilling_->request);
    prefilling_.reset();
    return;
  }
  for (auto& r : running_)
    if (r->id == id) {
      r->group->cancel();
      drop_rows_of({id});
      return;
    }
  for (auto it = beam_queue_.begin(); it != beam_queue_.end(); ++it)
    if ((*it)->id == id) {
      done_.emplace(id, cancelled_beams((*it)->prompt, (*it)->config));
      finished_now_.push_back(id);
      beam_queue_.erase(it);
      return;
    }
  if (auto r = speculative_->cancel(id)) {
    done_.emplace(id, std::move(*r));
    finished_now_.push_back(id);
    return;
  }
  if (auto p = beam_prompts_.find(id); p != beam_prompts_.end() && beams_->remove(id)) {
    done_.emplace(id, cancelled_beams(p->second.first, p->second.second));
    finished_now_.push_back(id);
    beam_prompts_.erase(p);
  }
}

void BatchEngine::step_speculative() {
  if (speculative_->empty()) return;
  const bool alone = running_.empty() && beams_->empty();
  for (auto& [id, result] : speculative_->step(options_.max_batch_rows - running_rows(), alone)) {
    done_.emplace(id, std::move(result));
    finished_now_.push_back(id);
  }
}

void BatchEngine::step_beams() {
  while (!beam_queue_.empty()) {
    auto& b = *beam_queue_.front();
    const GenerationConfig* kind = beams_->any_config();
    if (kind && !same_cache_kind(*kind, b.config)) break;  // waits for the beam batch to empty
    // Rows are shared with the sampling rows; a search wider than the batch runs when it would be alone.
    const bool alone = beams_->empty() && running_.empty();
    if (!alone && running_rows() + b.config.num_beams > options_.max_batch_rows) break;
    try {
      beams_->add(b.id, b.prompt, b.config, b.options);
    } catch (const std::exception& e) {  // its own prefill failed: it ends alone
      GenerationResult r = cancelled_beams(b.prompt, b.config);
      r.error = as_error(e, "batch");
      done_.emplace(b.id, std::move(r));
      finished_now_.push_back(b.id);
      beam_queue_.pop_front();
      continue;
    }
    beam_prompts_.emplace(b.id, std::make_pair(std::move(b.prompt), std::move(b.config)));
    beam_queue_.pop_front();
  }
  if (beams_->empty()) return;
  for (auto& [id, result] : beams_->step()) {
    auto p = beam_prompts_.find(id);
    if (result.error && result.sequences.empty()) {  // failed on its own: its prompt, no sequences
      std::optional<Error> why = std::move(result.error);
      result = cancelled_beams(p->second.first, p->second.second);
      result.error = std::move(why);
    }
    beam_prompts_.erase(p);
    done_.emplace(id, std::move(result));
    finished_now_.push_back(id);
  }
}

void BatchEngine::drop_rows_of(const std::vector<int>& leaving) {
  std::vector<int> keep;
  std::vector<int> input;
  std::vector<std::unique_ptr<Request>> still;
  int row = 0;
  for (auto& r : running_) {
    const int n = r->group->rows();
    const bool leaves = std::find(leaving.begin(), leaving.end(), r->id) != leaving.end();
    if (leaves) {
      // mlx-lm's server stores the cache at the end of a generation (not of one that failed)
      if (!r->error) store_prefixes(*r, caches_, row);
      finish(*r);
    } else {
      for (int i = 0; i < n; ++i) {
        keep.push_back(row + i);
        input.push_back(next_input_[row + i]);
      }
      still.push_back(std::move(r));
    }
    row += n;
  }
  running_ = std::move(still);
  next_input_ = std::move(input);
  if (running_.empty()) {
    settle_pending();
    caches_.clear();
    return;
  }
  keep_rows(caches_, keep);
  // A step already queued computed every row: keep the staying rows' tokens (their recorded outputs
  // belong to their own groups; a leaving group dropped its own).
  if (pending_)
    pending_->tokens =
        mx::take(pending_->tokens, mx::array(keep.data(), {static_cast<int>(keep.size())}, mx::int32), 0);
}

// Reads one step's tokens for a request's rows, streams them and tells whether the request is done.
static bool read_tokens(DecodeGroup& group, TextStreams& texts, const RowTokenCallback& cb,
                        const RowLogprobsCallback& lcb, const int32_t* tokens) {
  const std::vector<int>& out = group.accept(tokens);
  for (int row = 0; row < group.rows(); ++row) {
    if (out[row] < 0) continue;
    if (lcb) lcb(row, out[row], group.last_logprobs(row));
    std::string piece = texts.push(row, out[row], group.finish_reason(row));
    if (cb) cb(row, out[row], piece);
  }
  return group.done();
}

// read_tokens for one request of the batch: a failure of its own (its constraint, its processed scores)
// ends it with that error instead of failing the step every request shares.
bool BatchEngine::read_request_tokens(Request& r, const int32_t* tokens) {
  try {
    return read_tokens(*r.group, *r.texts, r.on_token, r.on_logprobs, tokens);
  } catch (const std::exception& e) {
    fail_request(r, as_error(e, "batch"));
    return true;
  }
}

void BatchEngine::fail_request(Request& r, const Error& e) {
  r.error = e;
  r.group->cancel();
}

void BatchEngine::admit() {
  std::optional<std::string> identity;  // the prefix cache's key, once per call
  // Rows decoding now wait for every prefill below (max_joins_per_step, prefill_step_tokens).
  const bool decoding = !running_.empty() || !beams_->empty() || !speculative_->empty();
  const bool limit_joins = decoding && options_.max_joins_per_step > 0;
  int budget = -1;
  if (decoding && options_.prefill_step_tokens > 0) budget = options_.prefill_step_tokens;
  if (decoding && options_.prefill_step_tokens < 0) budget = pacer_->budget();
  int joined = 0;
  while (budget != 0) {
    if (!prefilling_) {
      if (limit_joins && joined >= options_.max_joins_per_step) return;
      if (!start_prefill(identity)) return;
      ++joined;
    }
    const int fed = continue_prefill(budget);
    if (budget > 0) budget = std::max(0, budget - fed);
  }
}

bool BatchEngine::start_prefill(std::optional<std::string>& identity) {
  // The first waiting request that fits: the running batch's cache kind, and the rows left.
  auto it = queue_.begin();
  if (!running_.empty())
    while (it != queue_.end() && !same_cache_kind((*it)->config, running_.front()->config)) ++it;
  if (it == queue_.end()) return false;
  const int rows = (*it)->group->rows();
  if ((!running_.empty() || !beams_->empty()) && running_rows() + rows > options_.max_batch_rows) return false;
  auto p = std::make_unique<Prefill>();
  p->request = std::move(*it);
  queue_.erase(it);
  Request& req = *p->request;
  const int n = static_cast<int>(req.prompt.size());
  req.group->start(req.prompt);
  KVCacheList given = req.options.prompt_cache ? clone_caches(*req.options.prompt_cache) : KVCacheList{};
  // The request's own caches and prefill, exactly as its solo run makes them.
  p->cache = cache_options_from(req.config);
  PrefixCache* prefixes = options_.prefix_cache.get();
  bool looked_up = false;
  if (prefixes) {
    // Rotating and quantized caches hold what depends on how the tokens went in: standard ones only.
    if (!identity) identity = prefix_identity();
    if (!p->cache.kv_bits && !p->cache.max_kv_size)
      req.prefix_identity = *identity + (p->cache.kv_cache_dtype ? " kv_cache_dtype=" + *p->cache.kv_cache_dtype : "");
    if (!req.prefix_identity.empty() && given.empty()) {
      given = prefixes->lookup(req.prompt, req.prefix_identity).caches;
      looked_up = true;
    }
  }
  p->pos = start_caches(model_, p->caches, std::move(given), n, p->cache);
  if (prefixes && !looked_up) prefixes->count_miss(n - p->pos);
  prefilling_ = std::move(p);
  return true;
}

int BatchEngine::continue_prefill(int budget) {
  Prefill& p = *prefilling_;
  Request& req = *p.request;
  const int n = static_cast<int>(req.prompt.size());
  // Only a standard cache's prefill may stop anywhere (prefill_tokens' chunks give the same bits); see
  // BatchEngineOptions::prefill_step_tokens for the others.
  const auto& rope = model_.config().rope_scaling;
  const bool splits = !p.cache.kv_bits && !p.cache.max_kv_size &&
                      !(rope && rope->rope_type == "longrope" && n > rope->original_max_position_embeddings);
  const int upto = budget > 0 && splits ? std::min(n, p.pos + budget) : n;
  const int fed = upto - p.pos;
  // Hooks that split prompt and generated positions see this prompt while it is prefilled.
  model_.hooks().set_prompt_length(n);
  const auto start = std::chrono::steady_clock::now();
  prefilled_ = true;
  std::optional<mx::array> tokens;
  // Everything up to its first token is this request's own (its caches, hooks, settings, processors,
  // the memory its prompt needs): any failure ends it alone.
  try {
    fault_point("batch.prefill");
    mx::array ids(req.prompt.data(), {1, upto}, mx::int32);
    mx::array last = prefill_tokens(model_, p.caches, ids, p.pos,
                                    {p.cache, req.options.prefill_chunk_size, req.options.kv_prefill_step_size});
    if (upto < n) mx::eval(last);  // the rest in later steps: this part's keys and values are written now
    if (upto == n) {
      if (const int rows = req.group->rows(); rows > 1) {
        auto zeros = mx::zeros({rows}, mx::int32);
        for (auto& c : p.caches) c->select(zeros);
        last = mx::repeat(last, rows, 0);
      }
      tokens = req.group->choose(last);
      auto outs = req.group->outputs();
      outs.push_back(*tokens);
      mx::eval(outs);
    }
  } catch (const std::exception& e) {
    std::unique_ptr<Request> r = std::move(p.request);
    prefilling_.reset();
    fail_request(*r, as_error(e, "batch"));
    finish(*r);
    return fed;
  }
  p.pos = upto;
  pacer_->prefilled(fed, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (upto < n) return fed;
  std::unique_ptr<Request> r = std::move(p.request);
  KVCacheList caches = std::move(p.caches);
  prefilling_.reset();
  const int32_t* t = tokens->data<int32_t>();
  if (read_request_tokens(*r, t)) {
    store_prefixes(*r, caches, 0);
    finish(*r);
    return fed;
  }
  for (int i = 0; i < r->group->rows(); ++i) next_input_.push_back(t[i]);
  append_rows(caches_, std::move(caches), options_.max_batch_rows);
  running_.push_back(std::move(r));
  return fed;
}

BatchEngine::Step BatchEngine::build_step(const mx::array& input) {
  const int rows = sampling_rows();
  // Every running row is past its prompt: all positions are generated ones for position-aware hooks.
  model_.hooks().set_prompt_length(0);
  auto logits = forward_and_quantize(model_, caches_, mx::reshape(input, {rows, 1}), 1,
                                     cache_options_from(running_.front()->config));
  logits = mx::reshape(logits, {rows, logits.shape(-1)});
  // Greedy requests without processors share one argmax and one invalid-logits test over the batch's
  // logits: per request, a dozen graph ops (kernel launches on a GPU) became three.
  int plain = 0;
  for (auto& r : running_) plain += r->group->picks_raw_argmax() ? 1 : 0;
  std::optional<DecodeGroup::Picked> shared;
  if (plain >= 2) shared = DecodeGroup::pick_greedy(logits);
  std::vector<mx::array> chosen;
  Step step{mx::array(0), {}};
  int row = 0;
  for (auto& r : running_) {
    const int n = r->group->rows();
    // Processors that run the model themselves (guidance's unconditional forward) see the request's own
    // prompt length, as in its solo run.
    model_.hooks().set_prompt_length(static_cast<int>(r->prompt.size()));
    std::optional<DecodeGroup::Picked> mine;
    if (shared && r->group->picks_raw_argmax())
      mine = DecodeGroup::Picked{mx::slice(shared->tokens, {row}, {row + n}),
                                 mx::slice(shared->invalid_rows, {row}, {row + n})};
    try {
      fault_point("batch.choose");
      chosen.push_back(r->group->choose(mx::slice(logits, {row, 0}, {row + n, logits.shape(-1)}), mine));
      for (auto& o : r->group->outputs()) step.outputs.push_back(o);
    } catch (const std::exception& e) {  // its own processors failed this step: it leaves when the step is read
      step.failed.emplace_back(r->id, as_error(e, "batch"));
      chosen.push_back(mx::zeros({n}, mx::int32));
    }
    row += n;
  }
  step.tokens = chosen.size() == 1 ? chosen[0] : mx::concatenate(chosen, 0);
  std::vector<mx::array> all = step.outputs;
  all.push_back(step.tokens);
  mx::async_eval(std::move(all));
  return step;
}

void BatchEngine::decode() {
  if (!pending_) {
    if (running_.empty()) return;
    pending_ = build_step(mx::array(next_input_.data(), {sampling_rows()}, mx::int32));
  }
  Step current = std::move(*pending_);
  pending_.reset();
  // Queue the following step before reading this one (mlx-lm's generate_step / BatchGenerator), unless
  // a waiting request could join now (it joins between steps) or every request is at its last token.
  bool more = false;
  for (auto& r : running_) more = more || r->group->steps() + 1 < r->group->budget();
  const bool joining = prefilling_ || (!queue_.empty() && running_rows() < options_.max_batch_rows);
  if (more && !joining) pending_ = build_step(current.tokens);
  current.outputs.push_back(current.tokens);  // (the tokens may have been narrowed to staying rows)
  fault_point("batch.step");                  // the forward every row shares: its failure fails them all
  mx::eval(current.outputs);                  // the one host sync per step
  const int32_t* t = current.tokens.data<int32_t>();
  std::copy(t, t + sampling_rows(), next_input_.begin());
  std::vector<int> leaving;
  int row = 0;
  for (auto& r : running_) {
    auto f = std::find_if(current.failed.begin(), current.failed.end(), [&](auto& x) { return x.first == r->id; });
    if (f != current.failed.end()) {
      fail_request(*r, f->second);
      leaving.push_back(r->id);
    } else if (read_request_tokens(*r, t + row)) {
      leaving.push_back(r->id);
    }
    row += r->group->rows();
  }
  if (!leaving.empty()) drop_rows_of(leaving);
}

std::vector<int> BatchEngine::step() {
  finished_now_.clear();
  stepping_ = true;
  try {
    prefilled_ = false;
    if (!pending_) admit();  // a queued step holds the current rows: new ones join after it is read
    const auto start = std::chrono::steady_clock::now();
    const bool decodes = !running_.empty();
    decode();
    if (decodes && !prefilled_)
      pacer_->decoded(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    step_beams();
    step_speculative();
  } catch (...) {
    stepping_ = false;
    throw;
  }
  stepping_ = false;
  std::vector<int> cancels = std::move(cancels_);
  cancels_.clear();
  for (int id : cancels) cancel(id);
  return finished_now_;
}

std::optional<GenerationResult> BatchEngine::take_result(int id) {
  auto it = done_.find(id);
  if (it == done_.end()) return std::nullopt;
  GenerationResult r = std::move(it->second);
  done_.erase(it);
  return r;
}

}  // namespace mlxgp
