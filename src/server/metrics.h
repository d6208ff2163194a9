// The server's Prometheus metrics (GET /metrics, text exposition format 0.0.4): requests by endpoint and
// status, prompt and generated tokens, queue depth, running requests and rows, batch occupancy, the
// time-to-first-token and inter-token latency histograms, and the prompt cache's counters (prefix
// reuse). Thread-safe: the HTTP threads count requests, the worker thread counts tokens and steps.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "mlxgp/generation_result.h"
#include "mlxgp/prefix_cache.h"

namespace mlxgp::server {

// A Prometheus histogram: cumulative counts per upper bound, a sum and a count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // The histogram's lines (name_bucket{le=...}, name_sum, name_count).
  std::string render(const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<long long> counts_;  // per bound (not cumulative), last = +Inf
  double sum_ = 0;
  long long count_ = 0;
};

class Metrics {
 public:
  explicit Metrics(int max_batch_rows);
  // One answered HTTP request. Routes the server does not serve are counted as "other".
  void count_request(const std::string& path, int status);
  void add_prompt_tokens(long long n);
  void add_generated_token();
  void observe_ttft(double seconds);         // submission -> a request's first token
  void observe_inter_token(double seconds);  // between two tokens of one row
  // After each engine step: the rows that decode together, and the engine's state.
  void observe_step(int rows);
  void set_state(int waiting, int running_requests, int running_rows);
  // The engine's prefix cache (--prompt-cache-bytes), as of the last step; all zero when it is off.
  void set_prompt_cache(const PrefixCacheStats& stats);
  // A finished speculative or prompt-lookup request (--draft-model, use_speculative, ...).
  void add_speculative(const SpeculativeStats& stats);
  std::string render() const;

 private:
  mutable std::mutex m_;
  const int max_batch_rows_;
  std::map<std::pair<std::string, int>, long long> requests_;
  long long prompt_tokens_ = 0, generated_tokens_ = 0, steps_ = 0, step_rows_ = 0;
  int waiting_ = 0, running_requests_ = 0, running_rows_ = 0;
  Histogram ttft_, itl_, rows_;
  PrefixCacheStats prompt_cache_;
  long long speculative_requests_ = 0, drafted_ = 0, accepted_ = 0;
};

}  // namespace mlxgp::server
