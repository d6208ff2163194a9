// The OpenAI-compatible service behind `mlxgp serve`, free of any HTTP library: the HTTP face
// (cli/cmd_serve.cpp) hands it request bodies and writes back what it returns. One worker thread owns
// the BatchEngine (continuous batching); request threads parse and validate a body, enqueue it and wait
// on their own channel for its tokens and result.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <mlx/distributed/distributed.h>
#include <nlohmann/json.hpp>

#include "mlxgp/generation_config.h"
#include "mlxgp/loader.h"
#include "mlxgp/tool_calls.h"

namespace mlxgp::server {

// An OpenAI error: HTTP status and the body {"error": {"message", "type", "param", "code"}}.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string type = {}, std::string code = {});
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  nlohmann::json body() const;

 private:
  int status_;
  std::string param_, type_, code_;
};

struct ServiceOptions {
  int max_batch_rows = 16;       // rows decoded together (BatchEngineOptions::max_batch_rows)
  int max_queue = 64;            // requests waiting for a row at most; beyond that: 429
  int max_joins_per_step = 0;    // requests joining per decode step (BatchEngineOptions::max_joins_per_step)
  int prefill_step_tokens = -1;  // joining prompts' tokens prefilled per step (BatchEngineOptions::prefill_step_tokens)
  std::string model_id;          // the id /v1/models lists and requests name (default: the model file's stem)
  int max_tokens_cap = 0;        // > 0: every request's max_new_tokens is clamped to this (--max-tokens-cap)
  std::string chat_template;     // non-empty: the chat template source used instead of the model's (--chat-template)
  // Chat replies read back (docs/server.md): the tool-call format (--tool-parser; nullopt: the one the chat
  // template asks for, tool_call_format_for_template) and a leading <think> block as reasoning_content
  // (--reasoning-format auto; false: none).
  std::optional<ToolCallFormat> tool_parser;
  bool reasoning = true;
  // Prompt-prefix reuse (--prompt-cache-bytes; BatchEngineOptions::prefix_cache): finished sequences' KV
  // caches are kept, least recently used out first, up to this many bytes; 0 turns it off.
  std::size_t prompt_cache_bytes = std::size_t{256} << 20;
  // The KV cache dtype of requests that name none (--kv-cache-dtype, GenerationConfig::kv_cache_dtype; vLLM's
  // --kv-cache-dtype). Requests asking for kv_bits or max_kv_size, whose caches have their own formats, keep them.
  std::optional<std::string> kv_cache_dtype;
  // Speculative decoding (--draft-model): a draft checkpoint loaded once, used by requests that ask for
  // use_speculative, and by greedy requests that did not choose while at most speculative_max_rows rows
  // are busy in the engine (server/speculation.h).
  std::string draft_model;
  int speculative_max_rows = 1;
  // Tensor parallelism (`serve --tensor-parallel`, docs/distributed.md): the model is sharded over this group.
  // Rank 0 serves HTTP and hands each scheduler step's new requests and cancellations to the other ranks,
  // which repeat its steps on their share of the model (Service::follow).
  std::optional<mlx::core::distributed::Group> tensor_parallel;
};

class Worker;
class Job;
class Metrics;

// One accepted completion request: its streamed events or its final response.
class Completion {
 public:
  ~Completion();  // cancels the request if it is still running
  bool streaming() const { return stream_; }
  // Streaming: the next server-sent event ("data: {...}\n\n"), waiting for it; nullopt after
  // "data: [DONE]\n\n" has been returned. After `keep_alive` without one (text held back: a tool call, a
  // possible stop string) an SSE comment, ": keep-alive\n\n", which clients ignore: writing it is how the
  // HTTP face notices a client that left (httplib 0.11 sees that only when a write fails).
  std::optional<std::string> next_event(std::chrono::milliseconds keep_alive = std::chrono::seconds(1));
  // Non-streaming: waits up to `timeout` for every choice (or a failure); true once response() will not
  // wait. The HTTP face polls it to notice a client that went away while the request runs.
  bool wait(std::chrono::milliseconds timeout);
  // Non-streaming: waits for every choice and returns the response object as JSON text. Throws
  // ApiError when the generation failed.
  std::string response();
  // Ends the request's rows in the engine now (a client that went away).
  void cancel();

 private:
  friend class Service;
  struct State;
  Completion(std::unique_ptr<State> state, bool stream);
  std::unique_ptr<State> state_;
  bool stream_;
};

enum class Endpoint { Completions, ChatCompletions };

class Service {
 public:
  // Starts the worker thread. The model's generation_config.json is the base of every request.
  Service(LoadedModel model, ServiceOptions options);
  ~Service();  // cancels what runs and joins the worker
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  const std::string& model_id() const { return options_.model_id; }
  // Warnings about the model's generation_config.json (fields not implemented, ignored).
  const std::vector<std::string>& config_warnings() const { return warnings_; }
  nlohmann::json models() const;                       // GET /v1/models
  nlohmann::json health() const;                       // GET /health
  nlohmann::json tokenize(const std::string& body);    // POST /tokenize; throws ApiError
  nlohmann::json detokenize(const std::string& body);  // POST /detokenize; throws ApiError
  // POST /v1/completions and /v1/chat/completions: parses and validates the body, submits it to the
  // engine (a bad request throws ApiError 400 / 404 before anything is sent; a full queue 429).
  std::unique_ptr<Completion> start(Endpoint endpoint, const std::string& body);
  // Ends every request now (finish_reason "abort") and refuses new ones with 503 (shutdown).
  void shutdown();
  // The first step of a graceful stop (SIGTERM): new completions get 503 and /health says "draining",
  // while the requests already accepted run on.
  void stop_accepting() { draining_ = true; }
  bool draining() const { return draining_; }
  // Completions whose response or stream is not yet fully handed to the HTTP face (accepted and alive).
  int open_completions() const { return open_->load(); }
  // A rank other than 0 of a tensor-parallel server: builds no worker thread; follow() repeats rank 0's
  // scheduler steps (the same requests parsed from the same bodies, the same cancellations, the same
  // decode steps) until rank 0 stops.
  void follow();
  // GET /metrics: Prometheus text (exposition format 0.0.4).
  std::string metrics() const;
  // Counts one answered HTTP request (its path and status) for /metrics.
  void count_request(const std::string& path, int status);

 private:
  LoadedModel model_;
  ServiceOptions options_;
  std::shared_ptr<Metrics> metrics_;
  GenerationConfig base_;  // the model's generation_config.json
  std::vector<std::string> warnings_;
  std::shared_ptr<Worker> worker_;
  std::shared_ptr<Model> draft_;  // --draft-model, loaded once
  std::atomic<bool> draining_{false};
  std::shared_ptr<std::atomic<int>> open_ = std::make_shared<std::atomic<int>>(0);
  long long created_ = 0;  // when the model was loaded (Unix seconds): /v1/models' "created"
};

// GET /: the chat page, one self-contained HTML document (inline CSS and JS, no external resources) that
// streams replies from /v1/chat/completions.
const std::string& chat_page_html();

// Whether `header` (an Authorization header value) is "Bearer <key>" (the scheme in any case, RFC 7235),
// compared in constant time.
bool bearer_matches(const std::string& header, const std::string& key);

}  // namespace mlxgp::server
