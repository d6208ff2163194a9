#include "server/worker.h"

#include <algorithm>
#include <exception>

#include "mlxgp/distributed.h"
#include "mlxgp/error.h"

namespace mlxgp::server {

BatchEngineOptions engine_options_for(const ServiceOptions& options, std::shared_ptr<Model> draft) {
  BatchEngineOptions o;
  o.draft = std::move(draft);
  o.draft_source = options.draft_model;
  o.max_batch_rows = options.max_batch_rows;
  o.max_joins_per_step = options.max_joins_per_step;
  o.prefill_step_tokens = options.prefill_step_tokens;
  if (options.prompt_cache_bytes > 0) o.prefix_cache = std::make_shared<PrefixCache>(options.prompt_cache_bytes);
  return o;
}

Worker::Worker(Model& model, std::shared_ptr<const Tokenizer> tokenizer, BatchEngineOptions engine, int max_queue,
               std::shared_ptr<Metrics> metrics, std::optional<mlx::core::distributed::Group> tensor_parallel,
               SpeculationPolicy speculation)
    : model_(model),
      tokenizer_(std::move(tokenizer)),
      engine_options_(std::move(engine)),
      max_queue_(max_queue),
      metrics_(std::move(metrics)),
      tensor_parallel_(std::move(tensor_parallel)),
      speculation_(std::move(speculation)) {
  if (tensor_parallel_ && tensor_parallel_->size() == 1) tensor_parallel_.reset();
  engine_ = std::make_unique<BatchEngine>(model_, tokenizer_, engine_options_);
  if (engine_options_.prefix_cache) metrics_->set_prompt_cache(engine_options_.prefix_cache->stats());  // its budget
  thread_ = std::thread([this] { loop(); });
}

Worker::~Worker() { stop(); }

void Worker::stop() {
  {
    std::lock_guard<std::mutex> lk(m_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::vector<int> Worker::submit(std::vector<BatchRequest> requests, std::shared_ptr<Channel> channel,
                                std::string replay, bool may_speculate) {
  auto s = std::make_unique<Submission>();
  const int count = static_cast<int>(requests.size());
  {
    std::lock_guard<std::mutex> lk(channel->m);
    channel->results.assign(count, std::nullopt);
    channel->unfinished = count;
  }
  s->requests = std::move(requests);
  s->channel = std::move(channel);
  s->submitted = std::chrono::steady_clock::now();
  s->replay = std::move(replay);
  s->may_speculate = may_speculate;
  auto accepted = s->accepted.get_future();
  {
    std::lock_guard<std::mutex> lk(m_);
    if (stop_) throw ApiError(503, "the server is shutting down");
    if (count > max_queue_)
      throw ApiError(400,
                     "a request of " + std::to_string(count) + " prompts exceeds the queue (--max-queue " +
                         std::to_string(max_queue_) + ")",
                     "prompt");
    // --max-queue counts requests waiting for a row: submitted ones that free rows will take are not.
    const int free_rows = std::max(0, engine_options_.max_batch_rows - rows_in_use_.load());
    if (waiting_.load() + count > max_queue_ + free_rows)
      throw ApiError(429, "too many requests are waiting (--max-queue " + std::to_string(max_queue_) + "); retry later",
                     "", "rate_limit_error", "queue_full");
    waiting_ += count;
    inbox_.push_back(std::move(s));
  }
  cv_.notify_all();
  return accepted.get();  // rethrows the worker's ApiError
}

void Worker::cancel(const std::vector<int>& ids) {
  {
    std::lock_guard<std::mutex> lk(m_);
    cancels_.insert(cancels_.end(), ids.begin(), ids.end());
  }
  cv_.notify_all();
}

void Worker::take_in(Submission& s) {
  std::vector<int> ids;
  const int count = static_cast<int>(s.requests.size());
  try {
    for (int i = 0; i < count; ++i) {
      BatchRequest& req = s.requests[i];
      auto live = std::make_shared<Live>();
      live->channel = s.channel;
      live->prompt_index = i;
      live->submitted = s.submitted;
      const int n = req.config.num_return_sequences;
      live->last_token.resize(n);
      live->logprobs.resize(n);
      if (req.top_logprobs >= 0)
        req.on_logprobs = [live](int row, int, const TokenLogprobs& lp) { live->logprobs.at(row) = lp; };
      req.on_token = [this, live, n](int row, int token, const std::string& text) {
        const auto now = std::chrono::steady_clock::now();
        if (!live->started) {
          live->started = true;
          --waiting_;
          ++running_;
          metrics_->observe_ttft(std::chrono::duration<double>(now - live->submitted).count());
        }
        metrics_->add_generated_token();
        auto& last = live->last_token.at(row);
        if (last) metrics_->observe_inter_token(std::chrono::duration<double>(now - *last).count());
        last = now;
        auto& lp = live->logprobs.at(row);
        if (text.empty() && !lp) return;
        {
          std::lock_guard<std::mutex> lk(live->channel->m);
          live->channel->tokens.push_back({live->prompt_index * n + row, text, token, std::move(lp)});
        }
        lp.reset();
        live->channel->cv.notify_all();
      };
      const int id = submit_maybe_speculating(*engine_, std::move(req), s.may_speculate, speculation_);
      live_.emplace(id, live);
      ids.push_back(id);
    }
  } catch (const std::exception& e) {
    // One refused prompt refuses the request: the ones already queued leave unseen.
    for (int id : ids) {
      engine_->cancel(id);
      engine_->take_result(id);
      live_.erase(id);
    }
    waiting_ -= count;
    const Error* err = dynamic_cast<const Error*>(&e);
    const int status = err && err->kind() == ErrorKind::InvalidInput ? 400 : 500;
    s.accepted.set_exception(std::make_exception_ptr(ApiError(status, without_component(e.what()))));
    return;
  }
  s.accepted.set_value(std::move(ids));
}

void Worker::deliver(int id, GenerationResult result) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  auto live = it->second;
  live_.erase(it);
  if (live->started) {
    --running_;
  } else {
    --waiting_;
  }
  if (result.stats.speculative) metrics_->add_speculative(*result.stats.speculative);
  {
    std::lock_guard<std::mutex> lk(live->channel->m);
    // A request whose own step failed (its settings against its constraint, say): its error, 400 when the
    // settings were at fault; the other requests of the batch went on.
    if (result.error && !live->channel->error)
      live->channel->error = ApiError(result.error->kind() == ErrorKind::InvalidInput ? 400 : 500,
                                      "generation failed: " + without_component(result.error->what()));
    live->channel->results[live->prompt_index] = std::move(result);
    --live->channel->unfinished;
  }
  live->channel->cv.notify_all();
}

void Worker::publish_state() {
  int running_requests = 0;
  for (auto& [id, live] : live_) running_requests += live->started ? 1 : 0;
  rows_in_use_ = engine_ ? engine_->running_rows() : 0;
  metrics_->set_state(waiting_.load(), running_requests, rows_in_use_.load());
  if (engine_options_.prefix_cache) metrics_->set_prompt_cache(engine_options_.prefix_cache->stats());
}

void Worker::fail_all(const std::string& why) {
  for (auto& [id, live] : live_) {
    {
      std::lock_guard<std::mutex> lk(live->channel->m);
      live->channel->error = ApiError(500, "generation failed: " + why);
    }
    live->channel->cv.notify_all();
    // Only these requests leave: submissions still in the inbox stay counted as waiting.
    if (live->started) --running_;
    else --waiting_;
  }
  live_.clear();
  try {
    engine_.reset();
  } catch (...) {
  }
  engine_ = std::make_unique<BatchEngine>(model_, tokenizer_, engine_options_);
}

void Worker::send_plan(const std::deque<std::unique_ptr<Submission>>& inbox, const std::vector<int>& cancels,
                       bool stopping) {
  nlohmann::json subs = nlohmann::json::array(), cancelled = nlohmann::json::array();
  for (auto& s : inbox) subs.push_back(nlohmann::json::parse(s->replay));
  for (int id : cancels)
    if (live_.count(id)) cancelled.push_back(id);  // the cancellations the loop below carries out
  // An empty text (one collective) when nothing changes: a decode step.
  const bool empty = !stopping && subs.empty() && cancelled.empty();
  const std::string plan =
      empty ? std::string() : nlohmann::json{{"stop", stopping}, {"subs", subs}, {"cancels", cancelled}}.dump();
  broadcast_text_from_rank0(*tensor_parallel_, plan);
}

void Worker::loop() {
  while (true) {
    std::deque<std::unique_ptr<Submission>> inbox;
    std::vector<int> cancels;
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lk(m_);
      const bool busy = engine_->busy();
      cv_.wait(lk, [&] { return stop_ || busy || !inbox_.empty() || !cancels_.empty(); });
      inbox.swap(inbox_);
      cancels.swap(cancels_);
      stopping = stop_;
    }
    if (tensor_parallel_) {
      try {
        send_plan(inbox, cancels, stopping);
      } catch (const std::exception& e) {
        // Another rank is gone: nothing can be generated any more.
        fail_all(without_component(e.what()));
        tensor_parallel_.reset();
        std::lock_guard<std::mutex> lk(m_);
        stop_ = stopping = true;  // later requests get 503
      }
    }
    if (stopping) {
      for (auto& s : inbox)
        s->accepted.set_exception(std::make_exception_ptr(ApiError(503, "the server is shutting down")));
      std::vector<int> ids;
      for (auto& [id, _] : live_) ids.push_back(id);
      for (int id : ids) {
        engine_->cancel(id);
        if (auto r = engine_->take_result(id)) deliver(id, std::move(*r));
      }
      engine_.reset();
      return;
    }
    for (auto& s : inbox) take_in(*s);
    for (int id : cancels) {
      if (!live_.count(id)) continue;
      engine_->cancel(id);
      if (auto r = engine_->take_result(id)) deliver(id, std::move(*r));
    }
    if (!engine_->busy()) {
      publish_state();
      continue;
    }
    try {
      const int rows_before = engine_->running_rows();
      const std::vector<int> finished = engine_->step();
      // Before the results wake their clients: a client that reads /metrics next sees its request counted.
      if (engine_options_.prefix_cache) metrics_->set_prompt_cache(engine_options_.prefix_cache->stats());
      for (int id : finished)
        if (auto r = engine_->take_result(id)) deliver(id, std::move(*r));
      // The rows of this step: those that ran into it, or those it admitted.
      if (const int rows = std::max(rows_before, engine_->running_rows()); rows > 0) metrics_->observe_step(rows);
    } catch (const std::exception& e) {
      fail_all(without_component(e.what()));
    }
    publish_state();
  }
}

}  // namespace mlxgp::server
