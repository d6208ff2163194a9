// The one thread that owns the BatchEngine. Request threads hand it submissions and cancellations and
// wait on their own Channel; the worker submits between decode steps, steps while anything runs, and
// puts each token and each finished result into the channel of the request it belongs to.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mlxgp/batch_engine.h"
#include "mlxgp/server.h"
#include "server/metrics.h"
#include "server/speculation.h"

namespace mlxgp::server {

// One HTTP request's events (filled by the worker, read by the request's thread).
struct Channel {
  struct Token {
    int choice;  // prompt index * n + row
    std::string text;
    int id = -1;                            // the token (with logprobs only)
    std::optional<TokenLogprobs> logprobs;  // when the request asked for logprobs
  };
  std::mutex m;
  std::condition_variable cv;
  std::deque<Token> tokens;
  std::vector<std::optional<GenerationResult>> results;  // per prompt, once finished
  int unfinished = 0;
  std::optional<ApiError> error;  // the engine failed while running the request
};

// The BatchEngine options of a server's engine: its rows and, unless --prompt-cache-bytes is 0, a prefix
// cache of its own (each rank of a tensor-parallel server builds the same one, so all evict alike).
// `draft`: the loaded --draft-model (BatchEngineOptions::draft), or null.
BatchEngineOptions engine_options_for(const ServiceOptions& options, std::shared_ptr<Model> draft = nullptr);

class Worker {
 public:
  // `engine`: the BatchEngine's options (kept when a failure rebuilds the engine, prefix cache included).
  // `tensor_parallel`: the group the model is sharded over; this worker (rank 0) sends every step's plan
  // to the other ranks (Service::follow).
  Worker(Model& model, std::shared_ptr<const Tokenizer> tokenizer, BatchEngineOptions engine, int max_queue,
         std::shared_ptr<Metrics> metrics, std::optional<mlx::core::distributed::Group> tensor_parallel = {},
         SpeculationPolicy speculation = {});
  ~Worker();  // stop()
  // Cancels what runs, refuses what waits (503) and joins the thread. Idempotent.
  void stop();
  // Submits every prompt of one request (n rows each) and returns their engine ids, once the worker has
  // taken them: ApiError 400 when the engine refuses one (none of them run then), 429 when the queue of
  // waiting requests is full, 503 when the worker is stopping.
  // `replay`: what the other ranks of a tensor-parallel server rebuild the requests from.
  // `may_speculate`: ParsedRequest::may_speculate (the worker decides with the engine's load).
  std::vector<int> submit(std::vector<BatchRequest> requests, std::shared_ptr<Channel> channel, std::string replay = {},
                          bool may_speculate = false);
  void cancel(const std::vector<int>& ids);
  int waiting() const { return waiting_.load(); }
  int running() const { return running_.load(); }

 private:
  struct Submission {
    std::vector<BatchRequest> requests;
    std::shared_ptr<Channel> channel;
    std::promise<std::vector<int>> accepted;
    std::chrono::steady_clock::time_point submitted;
    std::string replay;
    bool may_speculate = false;
  };
  struct Live {  // a request in the engine (worker thread only)
    std::shared_ptr<Channel> channel;
    int prompt_index;
    std::chrono::steady_clock::time_point submitted;
    bool started = false;  // has its first token (no longer waiting)
    std::vector<std::optional<std::chrono::steady_clock::time_point>> last_token;  // per row (metrics)
    std::vector<std::optional<TokenLogprobs>> logprobs;  // per row: the token on_token is about to get
  };
  void loop();
  void take_in(Submission& s);
  void deliver(int id, GenerationResult result);
  void fail_all(const std::string& why);
  void publish_state();  // the engine's state and the prefix cache's counters, to the metrics
  // Tensor parallelism: this iteration's new requests, effective cancellations and stop, to the other ranks.
  void send_plan(const std::deque<std::unique_ptr<Submission>>& inbox, const std::vector<int>& cancels, bool stopping);

  Model& model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  const BatchEngineOptions engine_options_;
  const int max_queue_;
  std::shared_ptr<Metrics> metrics_;
  std::optional<mlx::core::distributed::Group> tensor_parallel_;
  SpeculationPolicy speculation_;
  std::unique_ptr<BatchEngine> engine_;
  std::map<int, std::shared_ptr<Live>> live_;
  std::atomic<int> waiting_{0}, running_{0};
  std::atomic<int> rows_in_use_{0};  // the engine's rows after the last step (publish_state), for the queue check

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Submission>> inbox_;
  std::vector<int> cancels_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace mlxgp::server
