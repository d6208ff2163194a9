// Batched generation: many prompts decoded together, requests that join and leave a running batch
// between decode steps (continuous batching, as mlx-lm's BatchGenerator and vLLM's scheduler do), and
// generate_batch(), the one-call form for a list of prompts.
//
// Each request keeps everything that makes its result its own: its GenerationConfig, logits processors
// (penalties and n-gram bans see only its tokens), sampler and RNG (its seed), stopping criteria and
// outputs. A joining request is prefilled alone (exactly as generate() prefills it) and its KV caches
// are appended to the running batch aligned on the right; the rows share one forward per step, with
// left padding masked out and per-row positions (batch_cache.h), so every request produces what it
// produces alone, up to the rounding of a batched matmul.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mlxgp/error.h"
#include "mlxgp/generate.h"
#include "mlxgp/prefix_cache.h"

namespace mlxgp {

class DecodeGroup;
class TextStreams;
class SpeculativeLane;
class PrefillPacer;
namespace beam {
class BeamBatch;
}

// Called for each new token of a request's row with the text it completes (complete UTF-8 only).
using RowTokenCallback = std::function<void(int row, int token, const std::string& text)>;
// Called for each new token of a row, just before on_token, with its log-probability and the step's
// most likely tokens (BatchRequest::top_logprobs).
using RowLogprobsCallback = std::function<void(int row, int token, const TokenLogprobs& logprobs)>;

struct BatchRequest {
  std::vector<int> prompt_ids;
  GenerationConfig config;   // model defaults are filled in (with_model_defaults) at submit
  GeneratorOptions options;  // tokenizer (defaults to the engine's), processors, callbacks, prompt_cache
  RowTokenCallback on_token;
  // >= 0: each token's log-probability and the top_logprobs most likely tokens of its step, computed on
  // the device with the step and given to on_logprobs (the server's OpenAI logprobs).
  int top_logprobs = -1;
  RowLogprobsCallback on_logprobs;
};

struct BatchEngineOptions {
  // Rows decoded together at most (a request takes num_return_sequences rows); requests beyond wait.
  // A request larger than this runs when it would be alone.
  int max_batch_rows = 16;
  // Prompt-prefix reuse (prefix_cache.h; null: off). A finished request's sequence (prompt + generated
  // tokens) is stored with its row's KV caches; an admitted request starts from the stored entry with
  // the longest common prefix and prefills only the rest, so its tokens are those of a fresh prefill up
  // to the rounding of a split prefill. Only standard KV caches are reused and stored (kv_bits and
  // max_kv_size requests, a saved prompt_cache, hooks that change keys and values and LongRoPE models
  // count as misses; beam searches and speculative runs, in lanes of their own, do not use it). Engines
  // may share one (entries are keyed by model_identity).
  std::shared_ptr<PrefixCache> prefix_cache;
  // A loaded draft model (speculative decoding) for requests whose config.draft_model is draft_source, so
  // it is loaded once (the server's --draft-model). Other drafts are loaded per request.
  std::shared_ptr<Model> draft;
  std::string draft_source;
  // Waiting requests that join per step while rows are decoding (0: every one that fits). A joining
  // request is prefilled alone before the step, so the running rows wait for its prefill: a limit bounds
  // that wait (a burst of arrivals otherwise stalls every running stream for all of their prefills) at the
  // cost of rows joining later (docs/server.md measures both). An idle engine admits every request that
  // fits. Tokens are unaffected. It counts sampling and greedy requests (each with its
  // num_return_sequences rows); beam searches and speculative runs start in lanes of their own, which it
  // does not limit.
  int max_joins_per_step = 0;
  // While rows are decoding, the prompt tokens prefilled per step for joining requests: 0 whole prompts, N > 0
  // at most N, < 0 a budget steered as the engine runs so that a step's part takes about a decode step's time
  // (at least 16; PrefillPacer). A longer prompt is prefilled over several steps, so a running stream waits at most
  // that much prefill between two of its tokens (vLLM's chunked prefill, llama.cpp server's n_batch), and the joining
  // request's first token comes those steps later. A standard-cache prompt split this way is its solo run's prefill in
  // chunks (prefill_chunk_size), the same bits. Quantized and rotating caches, whose contents depend on how the prompt
  // goes in (mlx-lm's prefill steps), and LongRoPE prompts past original_max_position_embeddings (one forward) still
  // prefill whole, as do beam searches and speculative runs, which start in lanes of their own.
  int prefill_step_tokens = 0;
};

class BatchEngine {
 public:
  // The model (and tokenizer) must outlive the engine.
  BatchEngine(Model& model, std::shared_ptr<const Tokenizer> tokenizer, BatchEngineOptions options = {});
  ~BatchEngine();
  BatchEngine(const BatchEngine&) = delete;
  BatchEngine& operator=(const BatchEngine&) = delete;

  // Validates the request now (throws [config] / [generate] / [cache] / [prompt-cache], and refuses
  // in one line what cannot share a batch: quantized_kv_start beyond the prompt, memory traces) and
  // queues it. Returns its id. Requests share a batch only with
  // requests of the same cache kind (same_cache_kind). Speculative and prompt-lookup requests run in the
  // speculative lane (one verification round each per step, beside the batch; they report no
  // top_logprobs). Beam searches (num_beams > 1, every variant) share
  // a batch of their own (beam::BeamBatch), stepped after the sampling rows in each step(); they are not
  // streamed (on_token is not called: the best hypothesis is known at the end, as with generate()) and
  // cannot report top_logprobs.
  int submit(BatchRequest request);
  // Ends a queued or running request: its rows leave the batch, its result keeps the tokens so far with
  // FinishReason::Cancelled. Unknown or finished ids are ignored. Called from a token callback, it takes
  // effect when the current step() returns (and the id is then among the finished ones only after it).
  void cancel(int id);
  // Admits queued requests while rows are free (each is prefilled and gets its first token), then runs
  // one decode step for every running row. Returns the ids of the requests that finished in this call.
  std::vector<int> step();
  // Whether anything is queued or running.
  bool busy() const;
  int running_rows() const;  // sampling rows, beam rows and speculative runs
  int queued() const { return static_cast<int>(queue_.size() + beam_queue_.size()); }
  // The result of a finished request (once; nullopt while it runs or for unknown ids).
  std::optional<GenerationResult> take_result(int id);

 private:
  struct Request;
  struct BeamRequest;
  struct Prefill;  // a joining request whose prompt is part prefilled (prefill_step_tokens)
  // One decode step of every running row, queued on the device (mlx::core::async_eval).
  struct Step {
    mlx::core::array tokens;                // [rows] int32
    std::vector<mlx::core::array> outputs;  // the groups' recorded outputs of this step
    // Requests whose own processors refused this step (ids; their rows' tokens are placeholders).
    std::vector<std::pair<int, Error>> failed;
  };
  void admit();
  // Starts the first waiting request that fits (its caches, its prefix-cache lookup); false if none does.
  bool start_prefill(std::optional<std::string>& identity);
  // Prefills up to `budget` more tokens of the started request (all of them with budget < 0) and, once its
  // prompt is in, picks its first token and joins it to the batch. Returns the tokens prefilled.
  int continue_prefill(int budget);
  int prefilling_rows() const;
  Step build_step(const mlx::core::array& input);  // input: each row's last token [rows]
  void decode();
  void settle_pending();    // waits for a queued step, then drops it
  void finish(Request& r);  // assembles the result, moves it to done_
  // Takes a step's tokens for r's rows (streams them); true when r is done, or failed on its own (r.error).
  static bool read_request_tokens(Request& r, const int32_t* tokens);
  static void fail_request(Request& r, const Error& e);  // r ends with e (finish() or drop_rows_of() next)
  void drop_rows_of(const std::vector<int>& leaving_ids);
  int sampling_rows() const { return static_cast<int>(next_input_.size()); }
  void step_beams();        // admits waiting beam searches that fit, then steps the beam batch
  void step_speculative();  // starts waiting speculative runs that fit, then runs a round of each
  // The prefix cache's key for this model's standard caches; empty when nothing may be reused.
  std::string prefix_identity();
  // Stores each row of `r` (rows first_row.. of `caches`) in the prefix cache.
  void store_prefixes(const Request& r, const KVCacheList& caches, int first_row);

  Model& model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  BatchEngineOptions options_;
  int next_id_ = 0;
  std::deque<std::unique_ptr<Request>> queue_;
  std::vector<std::unique_ptr<Request>> running_;  // in row order
  std::unique_ptr<Prefill> prefilling_;            // started, not yet joined
  std::unique_ptr<PrefillPacer> pacer_;            // prefill_step_tokens < 0
  bool prefilled_ = false;                         // this step prefilled (its time is not a decode step's)
  KVCacheList caches_;                             // the running rows' caches
  std::vector<int> next_input_;                    // each running row's last token (next forward's input)
  std::optional<Step> pending_;                    // the next step, queued before the current one is read
  std::map<int, GenerationResult> done_;
  std::vector<int> finished_now_;
  bool stepping_ = false;  // inside step(): cancel() from a callback is deferred to its end
  std::vector<int> cancels_;
  std::deque<std::unique_ptr<BeamRequest>> beam_queue_;
  std::unique_ptr<beam::BeamBatch> beams_;
  std::unique_ptr<SpeculativeLane> speculative_;
  std::map<int, std::pair<std::vector<int>, GenerationConfig>> beam_prompts_;  // searching: prompt, config
};

struct BatchGenerateOptions {
  int batch_size = 16;       // rows decoded together (BatchEngineOptions::max_batch_rows)
  GeneratorOptions options;  // shared by every request (tokenizer, processors, callbacks)
  // Called for each new token of any request: its index in the input list, its row, the token and text.
  std::function<void(int request, int row, int token, const std::string& text)> on_token;
  // Called before the run for each request that cannot share a batch and runs alone: its index and
  // why (batch_refusal's line). The CLI prints it and Python warns: the setting is honoured, not batched.
  std::function<void(int request, const std::string& why)> on_alone;
  // Names request i in the errors its settings raise before the run ("requests.jsonl:3" in the CLI);
  // unset: "request i + 1".
  std::function<std::string(int request)> request_name;
};

// Generates for every prompt, with configs[i] for prompts[i] (one config for all when configs has one
// entry). Results come back in input order. Every request goes through one BatchEngine (beam searches
// and speculative runs in its lanes); those that cannot share a batch (quantized_kv_start beyond the
// prompt, memory traces) run alone through generate(), one after another, so every setting is honoured.
std::vector<GenerationResult> generate_batch(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                                             const std::vector<std::vector<int>>& prompts,
                                             const std::vector<GenerationConfig>& configs,
                                             BatchGenerateOptions options = {});

// Why a request cannot join a batch (empty when it can): the refusal message of BatchEngine::submit.
// `prompt_tokens` (-1: unknown) decides kv_bits with quantized_kv_start.
std::string batch_refusal(const GenerationConfig& config, const GeneratorOptions& options, int prompt_tokens = -1);
// Rows share one cache list, so requests in one batch quantize their KV caches alike (or not at all) and
// rotate them alike (max_kv_size and kv_keep, or no rotating cache).
bool same_cache_kind(const GenerationConfig& a, const GenerationConfig& b);

}  // namespace mlxgp
