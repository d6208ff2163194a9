#include "server/metrics.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace mlxgp::server {

namespace {

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string route_label(const std::string& path) {
  static const char* kRoutes[] = {
      "/", "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"};
  for (const char* r : kRoutes)
    if (path == r) return path;
  return "other";
}

void head(std::ostringstream& o, const char* name, const char* type, const char* help) {
  o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

void scalar(std::ostringstream& o, const char* name, const char* type, const char* help, double v) {
  head(o, name, type, help);
  o << name << " " << number(v) << "\n";
}

// Counts and byte sizes print exactly (%.9g would round them past a billion).
void integer(std::ostringstream& o, const char* name, const char* type, const char* help, long long v) {
  head(o, name, type, help);
  o << name << " " << v << "\n";
}

std::vector<double> row_bounds(int max_rows) {
  std::vector<double> b;
  for (int r = 1; r < max_rows; r *= 2) b.push_back(r);
  b.push_back(max_rows);
  return b;
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();  // first bound >= v
  ++counts_[i];
  sum_ += v;
  ++count_;
}

std::string Histogram::render(const std::string& name) const {
  std::ostringstream o;
  long long cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    o << name << "_bucket{le=\"" << number(bounds_[i]) << "\"} " << cumulative << "\n";
  }
  o << name << "_bucket{le=\"+Inf\"} " << count_ << "\n";
  o << name << "_sum " << number(sum_) << "\n" << name << "_count " << count_ << "\n";
  return o.str();
}

Metrics::Metrics(int max_batch_rows)
    : max_batch_rows_(max_batch_rows),
      ttft_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      itl_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
      rows_(row_bounds(max_batch_rows)) {}

void Metrics::count_request(const std::string& path, int status) {
  std::lock_guard<std::mutex> lk(m_);
  ++requests_[{route_label(path), status}];
}

void Metrics::add_prompt_tokens(long long n) {
  std::lock_guard<std::mutex> lk(m_);
  prompt_tokens_ += n;
}

void Metrics::add_generated_token() {
  std::lock_guard<std::mutex> lk(m_);
  ++generated_tokens_;
}

void Metrics::observe_ttft(double s) {
  std::lock_guard<std::mutex> lk(m_);
  ttft_.observe(s);
}

void Metrics::observe_inter_token(double s) {
  std::lock_guard<std::mutex> lk(m_);
  itl_.observe(s);
}

void Metrics::observe_step(int rows) {
  std::lock_guard<std::mutex> lk(m_);
  ++steps_;
  step_rows_ += rows;
  rows_.observe(rows);
}

void Metrics::set_state(int waiting, int running_requests, int running_rows) {
  std::lock_guard<std::mutex> lk(m_);
  waiting_ = waiting;
  running_requests_ = running_requests;
  running_rows_ = running_rows;
}

void Metrics::set_prompt_cache(const PrefixCacheStats& stats) {
  std::lock_guard<std::mutex> lk(m_);
  prompt_cache_ = stats;
}

void Metrics::add_speculative(const SpeculativeStats& stats) {
  std::lock_guard<std::mutex> lk(m_);
  ++speculative_requests_;
  drafted_ += stats.drafted_tokens;
  accepted_ += stats.accepted_tokens;
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> lk(m_);
  std::ostringstream o;
  head(o, "mlxgp_requests_total", "counter", "HTTP requests answered, by endpoint and status.");
  for (auto& [key, n] : requests_)
    o << "mlxgp_requests_total{endpoint=\"" << key.first << "\",status=\"" << key.second << "\"} " << n << "\n";
  scalar(o, "mlxgp_prompt_tokens_total", "counter", "Prompt tokens of accepted completion requests.", prompt_tokens_);
  scalar(o, "mlxgp_generation_tokens_total", "counter", "Tokens generated (every row; a final EOS included).",
         generated_tokens_);
  scalar(o, "mlxgp_queue_depth", "gauge", "Requests (prompts) waiting for a row.", waiting_);
  scalar(o, "mlxgp_running_requests", "gauge", "Requests (prompts) decoding in the batch.", running_requests_);
  scalar(o, "mlxgp_running_rows", "gauge", "Rows in the running batch.", running_rows_);
  scalar(o, "mlxgp_max_batch_rows", "gauge", "Rows decoded together at most (--max-batch).", max_batch_rows_);
  scalar(o, "mlxgp_batch_occupancy", "gauge", "Running rows / --max-batch.",
         static_cast<double>(running_rows_) / max_batch_rows_);
  scalar(o, "mlxgp_engine_steps_total", "counter", "Engine steps (admissions and one decode step each).", steps_);
  scalar(o, "mlxgp_engine_step_rows_total", "counter",
         "Rows summed over engine steps (/ steps: the mean batch occupancy in rows).", step_rows_);
  const PrefixCacheStats& pc = prompt_cache_;
  integer(o, "mlxgp_prompt_cache_lookups_total", "counter",
          "Admitted requests looked up in the prompt cache (those whose settings rule out reuse count as misses).",
          pc.lookups);
  integer(o, "mlxgp_prompt_cache_hits_total", "counter", "Lookups that reused a cached prefix.", pc.hits);
  scalar(o, "mlxgp_prompt_cache_hit_rate", "gauge", "Hits / lookups since the start (0 before any lookup).",
         pc.lookups ? static_cast<double>(pc.hits) / pc.lookups : 0.0);
  integer(o, "mlxgp_prompt_cache_tokens_reused_total", "counter", "Prompt tokens taken from the cache, not prefilled.",
          pc.tokens_reused);
  integer(o, "mlxgp_prompt_cache_tokens_prefilled_total", "counter", "Prompt tokens prefilled after the lookups.",
          pc.tokens_prefilled);
  integer(o, "mlxgp_prompt_cache_evictions_total", "counter", "Entries evicted to stay within --prompt-cache-bytes.",
          pc.evictions);
  integer(o, "mlxgp_prompt_cache_entries", "gauge", "Sequences held by the prompt cache.", pc.entries);
  integer(o, "mlxgp_prompt_cache_bytes", "gauge", "Bytes of KV caches held by the prompt cache.",
          static_cast<long long>(pc.bytes));
  integer(o, "mlxgp_prompt_cache_max_bytes", "gauge", "The prompt cache's budget (--prompt-cache-bytes; 0: off).",
          static_cast<long long>(pc.max_bytes));
  integer(o, "mlxgp_speculative_requests_total", "counter",
          "Requests decoded speculatively (--draft-model, use_speculative, draft_layers, prompt_lookup_num_tokens).",
          speculative_requests_);
  integer(o, "mlxgp_speculative_drafted_tokens_total", "counter", "Candidate tokens those requests drafted.", drafted_);
  integer(o, "mlxgp_speculative_accepted_tokens_total", "counter", "Drafted tokens the model accepted.", accepted_);
  head(o, "mlxgp_batch_rows", "histogram", "Rows of each engine step (running into it, or admitted by it).");
  o << rows_.render("mlxgp_batch_rows");
  head(o, "mlxgp_time_to_first_token_seconds", "histogram", "From a request's submission to its first token.");
  o << ttft_.render("mlxgp_time_to_first_token_seconds");
  head(o, "mlxgp_inter_token_latency_seconds", "histogram", "Between two consecutive tokens of one row.");
  o << itl_.render("mlxgp_inter_token_latency_seconds");
  return o.str();
}

}  // namespace mlxgp::server
