// `mlxgp serve`: the HTTP face of the OpenAI-compatible service (include/mlxgp/server.h) on
// cpp-httplib. Routes, the API key, the body limit and SSE framing live here; everything a request
// means lives in the library.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <fstream>
#include <future>
#include <iostream>
#include <sstream>
#include <thread>

#include <httplib.h>

#include "args.h"
#include "commands.h"
#include "distributed_run.h"
#include "mlxgp/error.h"
#include "mlxgp/loader.h"
#include "mlxgp/server.h"

namespace mlxgp::cli {

namespace {

using server::ApiError;

std::atomic<bool> g_stop{false};
httplib::Server* g_server = nullptr;

extern "C" void on_stop_signal(int) {
  g_stop = true;
  if (g_server) g_server->stop();  // shutdown() + close() of the listening socket: async-signal-safe
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(e.body().dump(), "application/json");
}

// Wraps a handler so every failure becomes an OpenAI error object.
template <class F>
httplib::Server::Handler guarded(F fn) {
  return [fn](const httplib::Request& req, httplib::Response& res) {
    try {
      fn(req, res);
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const Error& e) {
      send_error(res, ApiError(e.kind() == ErrorKind::InvalidInput ? 400 : 500, e.what()));
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, std::string("internal error: ") + e.what()));
    }
  };
}

int int_flag(const Args& args, const char* name, int fallback, int lo, int hi) {
  auto v = args.get_int(name);
  if (!v) return fallback;
  if (*v < lo || *v > hi)
    fail("cli", std::string("--") + name + " must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return static_cast<int>(*v);
}

}  // namespace

int run_serve(const std::vector<std::string>& argv) {
  Args args("serve",
            "An OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions (streaming or not),\n"
            "/v1/models, /health, /tokenize, /detokenize, /metrics (Prometheus). Every request shares one continuously "
            "batched decode.");
  args.option("model", "default | model folder | file.gguf (default: default)")
      .option("model-id", "the model name clients use (default: the model file's or folder's name)")
      .option("host", "address to bind (default 127.0.0.1)")
      .option("port", "port to bind; 0 picks a free one (default 8080)")
      .option("api-key", "require 'Authorization: Bearer KEY' (every route but /health)")
      .option("max-batch", "rows decoded together at most (default 16)")
      .option("max-queue", "requests waiting for a row at most; more get HTTP 429 (default 64)")
      .option("max-body-bytes", "largest request body (default 8388608); larger get HTTP 413")
      .option("max-tokens-cap", "clamp every request's max_tokens (and the default) to N (default: no cap)")
      .option("chat-template", "a Jinja chat template file used instead of the model's")
      .option("dtype", "float32 | bfloat16 | float16: compute dtype (default: the checkpoint's own)")
      .option("tensor-parallel",
              "shard the model over the ranks of `mlx.launch -n N ... -- mlxgp serve ...` (docs/distributed.md): rank "
              "0 serves HTTP, the others follow its steps",
              false);
  if (!args.parse(argv)) return 0;
  const std::string host = args.get("host").value_or("127.0.0.1");
  const int port = int_flag(args, "port", 8080, 0, 65535);
  server::ServiceOptions options;
  options.max_batch_rows = int_flag(args, "max-batch", 16, 1, 4096);
  options.max_queue = int_flag(args, "max-queue", 64, 1, 1 << 20);
  options.model_id = args.get("model-id").value_or("");
  options.max_tokens_cap = int_flag(args, "max-tokens-cap", 0, 1, INT32_MAX);
  if (auto f = args.get("chat-template")) {
    std::ifstream in(*f, std::ios::binary);
    if (!in) fail("cli", "--chat-template: cannot read " + *f);
    std::ostringstream text;
    text << in.rdbuf();
    options.chat_template = text.str();
    if (options.chat_template.empty()) fail("cli", "--chat-template: " + *f + " is empty");
  }
  const int max_body = int_flag(args, "max-body-bytes", 8 << 20, 1024, 1 << 30);
  const auto api_key = args.get("api-key");
  if (api_key && api_key->empty()) fail("cli", "--api-key must not be empty");
  LoadOptions load_options;
  if (auto d = args.get("dtype")) load_options.dtype = parse_dtype(*d);

  std::optional<DistGroup> tp;
  if (args.has("tensor-parallel")) tp = join_distributed_run("--tensor-parallel");
  LoadedModel loaded = load(args.get("model").value_or("default"), load_options);
  std::unique_ptr<PeerWatch> watch;
  if (tp) {
    // A server needs every rank for as long as it runs: the watch lives until it stops.
    watch = start_tensor_parallel(*tp, *loaded.model, args, {"model", "chat-template"}, options.chat_template);
    if (tp->size() > 1) options.tensor_parallel = tp;
  }
  server::Service service(std::move(loaded), options);
  if (tp && tp->rank() != 0) {
    service.follow();  // until rank 0 stops
    return 0;
  }
  for (auto& w : service.config_warnings()) std::cerr << w << "\n";

  httplib::Server svr;
  const int threads = std::max(16, options.max_batch_rows + options.max_queue + 8);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_payload_max_length(static_cast<size_t>(max_body));
  svr.set_pre_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
    // /health and the chat page (static; it sends the key the user types with its API calls) are open.
    if (!api_key || req.path == "/health" || req.path == "/") return httplib::Server::HandlerResponse::Unhandled;
    if (server::bearer_matches(req.get_header_value("Authorization"), *api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "missing or invalid API key (Authorization: Bearer KEY)", "", "authentication_error",
                             "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // Errors httplib answers itself (unknown route 404, body too large 413, ...) get an error object too.
  svr.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string what = res.status == 404   ? "no route " + req.method + " " + req.path
                       : res.status == 413 ? "the request body is too large"
                                           : "HTTP error " + std::to_string(res.status);
    res.set_content(ApiError(res.status, what).body().dump(), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));

  svr.set_logger([&service](const httplib::Request& req, const httplib::Response& res) {
    service.count_request(req.path, res.status);
  });
  svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(server::chat_page_html(), "text/html; charset=utf-8");
  });
  svr.Get("/metrics", guarded([&](const httplib::Request&, httplib::Response& res) {
            res.set_content(service.metrics(), "text/plain; version=0.0.4; charset=utf-8");
          }));
  svr.Get("/health", guarded([&](const httplib::Request&, httplib::Response& res) {
            res.set_content(service.health().dump(), "application/json");
          }));
  svr.Get("/v1/models", guarded([&](const httplib::Request&, httplib::Response& res) {
            res.set_content(service.models().dump(), "application/json");
          }));
  svr.Post("/tokenize", guarded([&](const httplib::Request& req, httplib::Response& res) {
             res.set_content(service.tokenize(req.body).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                             "application/json");
           }));
  svr.Post("/detokenize", guarded([&](const httplib::Request& req, httplib::Response& res) {
             res.set_content(
                 service.detokenize(req.body).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                 "application/json");
           }));
  auto completions = [&](server::Endpoint endpoint) {
    return guarded([&service, endpoint](const httplib::Request& req, httplib::Response& res) {
      std::shared_ptr<server::Completion> c = service.start(endpoint, req.body);
      if (!c->streaming()) {
        res.set_content(c->response(), "application/json");
        return;
      }
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream",
          [c](size_t, httplib::DataSink& sink) {
            auto event = c->next_event();
            if (!event) {
              sink.done();
              return true;
            }
            if (!sink.write(event->data(), event->size())) {  // the client went away
              c->cancel();
              return false;
            }
            return true;
          },
          [c](bool success) {
            if (!success) c->cancel();
          });
    });
  };
  svr.Post("/v1/completions", completions(server::Endpoint::Completions));
  svr.Post("/v1/chat/completions", completions(server::Endpoint::ChatCompletions));

  int bound = port;
  if (port == 0) {
    bound = svr.bind_to_any_port(host);
    if (bound < 0) fail("serve", "cannot bind " + host);
  } else if (!svr.bind_to_port(host, port)) {
    fail("serve", "cannot bind " + host + ":" + std::to_string(port) + " (in use?)");
  }
  std::signal(SIGPIPE, SIG_IGN);
  g_server = &svr;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::cerr << "[serve] model '" << service.model_id() << "' on http://" << host << ":" << bound << std::endl;
  auto listening = std::async(std::launch::async, [&] { return svr.listen_after_bind(); });
  // On SIGTERM / SIGINT: stop accepting. httplib ends the streams in flight; a non-streaming request
  // gets 10 s to finish, then every request is cancelled (finish_reason "abort").
  while (listening.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
    if (!g_stop) continue;
    if (listening.wait_for(std::chrono::seconds(10)) != std::future_status::ready) service.shutdown();
    break;
  }
  listening.wait();
  g_server = nullptr;
  std::cerr << "[serve] stopped" << std::endl;
  return 0;
}

}  // namespace mlxgp::cli
