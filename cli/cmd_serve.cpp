// `mlxgp serve`: the HTTP face of the OpenAI-compatible service (include/mlxgp/server.h) on
// cpp-httplib. Routes, the API key, the body limit and SSE framing live here; everything a request
// means lives in the library.
#include <atomic>
#include <chrono>
#include <csignal>
#include <map>
#include <cstdint>
#include <fstream>
#include <future>
#include <iostream>
#include <limits>
#include <sstream>
#include <thread>

#include <httplib.h>

#include "args.h"
#include "load_flags.h"
#include "commands.h"
#include "distributed_run.h"
#include "mlxgp/error.h"
#include "mlxgp/loader.h"
#include "mlxgp/server.h"

namespace mlxgp::cli {

namespace {

using server::ApiError;

std::atomic<bool> g_stop{false};

// Only a flag: the main thread drains (httplib's stop() would cut the streams in flight at once).
extern "C" void on_stop_signal(int) { g_stop = true; }

// Waits until `done` or the deadline; true if `done`.
template <class F>
bool wait_until(F done, std::chrono::steady_clock::time_point deadline) {
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  // RFC 6750 section 3 for 401; a hint to back off for 429 (the queue drains within seconds).
  if (e.status() == 401) res.set_header("WWW-Authenticate", "Bearer");
  if (e.status() == 429) res.set_header("Retry-After", "1");
  res.set_content(e.body().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
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

// A byte count: digits with an optional K, M or G suffix (KiB, MiB, GiB).
std::size_t bytes_flag(const Args& args, const char* name, std::size_t fallback) {
  auto v = args.get(name);
  if (!v) return fallback;
  std::string digits = *v;
  int shift = 0;
  if (!digits.empty() && std::string("kKmMgG").find(digits.back()) != std::string::npos) {
    shift = std::string("kKmMgG").find(digits.back()) / 2 * 10 + 10;
    digits.pop_back();
  }
  const bool ok = !digits.empty() && digits.size() <= 15 && digits.find_first_not_of("0123456789") == std::string::npos;
  if (!ok) fail("cli", std::string("--") + name + " must be a byte count (e.g. 268435456, 512M, 2G), got '" + *v + "'");
  const unsigned long long n = std::stoull(digits);
  if (n > (std::numeric_limits<std::size_t>::max() >> shift)) fail("cli", std::string("--") + name + " is too large");
  return static_cast<std::size_t>(n) << shift;
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
      .option("max-joins-per-step",
              "waiting requests admitted per decode step while others decode; each is prefilled before the step, "
              "so this bounds the running streams' wait for new prompts; beam and speculative requests are not counted "
              "(default 0: all that fit)")
      .option(
          "prefill-step-tokens",
          "prompt tokens of joining requests prefilled per decode step while others decode; a longer prompt is "
          "prefilled over several steps, so the running streams wait at most this much prefill between two tokens "
          "(default auto: steered so a step's part takes about a decode step's time, at least 16; 0: whole prompts)")
      .option("max-queue", "requests waiting for a row at most; more get HTTP 429 (default 64)")
      .option("max-body-bytes", "largest request body (default 8388608); larger get HTTP 413")
      .option("max-tokens-cap", "clamp every request's max_tokens (and the default) to N (default: no cap)")
      .option("chat-template", "a Jinja chat template file used instead of the model's")
      .option("tool-parser",
              "auto | hermes | llama3 | none: the format tool calls are read from (default auto: the one the chat "
              "template asks for, docs/server.md)")
      .option("reasoning-format",
              "auto | none: a leading <think> block as reasoning_content, or left in content "
              "(default auto)")
      .option("dtype", "float32 | bfloat16 | float16: compute dtype (default: the checkpoint's own)")
      .option("prompt-cache-bytes",
              "keep finished requests' KV caches up to B bytes (suffix K, M, G) so a prompt that repeats one's "
              "beginning (the next turn of a chat) prefills only the rest; 0: off (default 256M)")
      .option("kv-cache-dtype",
              "float16 | bfloat16 | float32: store requests' KV caches in this dtype unless they name one (llama.cpp's "
              "default is float16; default: the activations' dtype)")
      .option("draft-model",
              "a draft checkpoint (folder or .gguf, the model's vocabulary) for speculative decoding: requests with "
              "use_speculative, and greedy requests while the server is quiet (docs/server.md)")
      .option("speculative-max-rows",
              "greedy requests are decoded with --draft-model unasked only while at most N-1 rows are busy (default "
              "1: when nothing else runs; 0: only when asked)")
      .option("shutdown-timeout",
              "seconds SIGTERM / SIGINT lets accepted requests finish before cancelling them (default 10)")
      .option("tensor-parallel",
              "shard the model over the ranks of `mlx.launch -n N ... -- mlxgp serve ...` (docs/distributed.md): rank "
              "0 serves HTTP, the others follow its steps",
              false);
  declare_int8_flag(args);
  if (!args.parse(argv)) return 0;
  const std::string host = args.get("host").value_or("127.0.0.1");
  const int port = int_flag(args, "port", 8080, 0, 65535);
  server::ServiceOptions options;
  options.max_batch_rows = int_flag(args, "max-batch", 16, 1, 4096);
  options.max_queue = int_flag(args, "max-queue", 64, 1, 1 << 20);
  options.max_joins_per_step = int_flag(args, "max-joins-per-step", 0, 0, 1 << 20);
  if (auto v = args.get("prefill-step-tokens"); v && *v != "auto") {
    if (v->empty() || v->find_first_not_of("0123456789") != std::string::npos)
      fail("cli",
           "--prefill-step-tokens must be auto or a whole number of tokens (0: whole prompts), got '" + *v + "'");
    options.prefill_step_tokens = int_flag(args, "prefill-step-tokens", 0, 0, 1 << 30);
  }
  options.model_id = args.get("model-id").value_or("");
  options.max_tokens_cap = int_flag(args, "max-tokens-cap", 0, 1, INT32_MAX);
  options.prompt_cache_bytes = bytes_flag(args, "prompt-cache-bytes", options.prompt_cache_bytes);
  options.kv_cache_dtype = args.get("kv-cache-dtype");
  options.draft_model = args.get("draft-model").value_or("");
  if (args.has("draft-model") && options.draft_model.empty()) fail("cli", "--draft-model needs a path");
  options.speculative_max_rows = int_flag(args, "speculative-max-rows", 1, 0, 1 << 20);
  if (args.has("speculative-max-rows") && options.draft_model.empty())
    fail("cli", "--speculative-max-rows needs --draft-model");
  if (auto f = args.get("chat-template")) {
    std::ifstream in(*f, std::ios::binary);
    if (!in) fail("cli", "--chat-template: cannot read " + *f);
    std::ostringstream text;
    text << in.rdbuf();
    options.chat_template = text.str();
    if (options.chat_template.empty()) fail("cli", "--chat-template: " + *f + " is empty");
  }
  if (auto t = args.get("tool-parser"); t && *t != "auto") {
    if (*t != "hermes" && *t != "llama3" && *t != "none")
      fail("cli", "--tool-parser must be auto, hermes, llama3 or none");
    options.tool_parser = parse_tool_call_format(*t);
  }
  if (auto r = args.get("reasoning-format")) {
    if (*r != "auto" && *r != "none") fail("cli", "--reasoning-format must be auto or none");
    options.reasoning = *r == "auto";
  }
  const int max_body = int_flag(args, "max-body-bytes", 8 << 20, 1024, 1 << 30);
  const int shutdown_timeout = int_flag(args, "shutdown-timeout", 10, 0, 24 * 3600);
  const auto api_key = args.get("api-key");
  if (api_key && api_key->empty()) fail("cli", "--api-key must not be empty");
  LoadOptions load_options = load_options_from(args);

  std::optional<DistGroup> tp;
  if (args.has("tensor-parallel")) tp = join_distributed_run("--tensor-parallel");
  LoadedModel loaded = load(args.get("model").value_or("default"), load_options);
  std::unique_ptr<PeerWatch> watch;
  if (tp) {
    // A server needs every rank for as long as it runs: the watch lives until it stops.
    watch = start_tensor_parallel(*tp, loaded, args, {"model"}, "");
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
    // httplib 0.11 applies --max-body-bytes to a Content-Length only: a chunked body would be read whatever
    // its size, and a compressed one unpacked past it. Refused before a byte of the body is read.
    if (req.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos) {
      send_error(res, ApiError(411, "chunked request bodies are not read: send the body with a Content-Length"));
      return httplib::Server::HandlerResponse::Handled;
    }
    if (const auto enc = req.get_header_value("Content-Encoding"); !enc.empty() && enc != "identity") {
      send_error(res, ApiError(415, "compressed request bodies (Content-Encoding: " + enc + ") are not read"));
      return httplib::Server::HandlerResponse::Handled;
    }
    // /health and the chat page (static; it sends the key the user types with its API calls) are open.
    if (!api_key || req.path == "/health" || req.path == "/") return httplib::Server::HandlerResponse::Unhandled;
    if (server::bearer_matches(req.get_header_value("Authorization"), *api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "missing or invalid API key (Authorization: Bearer KEY)", "", "authentication_error",
                             "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // Errors httplib answers itself (unknown route 404, body too large 413, ...) get an error object too.
  // The routes and their methods: another method on one of them is 405 with Allow (RFC 9110), not 404.
  static const std::map<std::string, std::string> kRoutes = {
      {"/", "GET"},          {"/metrics", "GET"},     {"/health", "GET"},          {"/v1/models", "GET"},
      {"/tokenize", "POST"}, {"/detokenize", "POST"}, {"/v1/completions", "POST"}, {"/v1/chat/completions", "POST"}};
  svr.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    auto route = kRoutes.find(req.path);
    if (res.status == 404 && (route != kRoutes.end() || req.path.starts_with("/v1/models/"))) {
      res.status = 405;
      res.set_header("Allow", route != kRoutes.end() ? route->second : "GET");
      res.set_content(ApiError(405, "method " + req.method + " is not allowed on " + req.path).body().dump(),
                      "application/json");
      return httplib::Server::HandlerResponse::Handled;
    }
    // httplib reads a form-typed body (curl -d's default) as a form, which it caps at 8 KB.
    const bool form = req.get_header_value("Content-Type").rfind("application/x-www-form-urlencoded", 0) == 0;
    std::string what =
        res.status == 404           ? "no route " + req.method + " " + req.path
        : res.status == 413 && form ? "a body sent as application/x-www-form-urlencoded (curl -d's default) is "
                                      "limited to 8 KB: send it with 'Content-Type: application/json'"
        : res.status == 413         ? "the request body is too large"
        : res.status == 400         ? "the request could not be read (a POST needs a body, with a Content-Length)"
                                    : "HTTP error " + std::to_string(res.status);
    res.set_content(ApiError(res.status, what).body().dump(), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));

  // What escapes a handler (guarded() catches what the service throws) gets an error object, not httplib's
  // default, which echoes the exception's text in a header.
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    send_error(res, ApiError(500, "internal error"));
  });
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
            if (service.draining()) res.status = 503;  // load balancers stop sending requests here
            res.set_content(service.health().dump(), "application/json");
          }));
  svr.Get("/v1/models", guarded([&](const httplib::Request&, httplib::Response& res) {
            res.set_content(service.models().dump(), "application/json");
          }));
  // OpenAI's GET /v1/models/{model}: the one model this server serves, or 404.
  svr.Get(R"(/v1/models/(.+))", guarded([&](const httplib::Request& req, httplib::Response& res) {
            const auto models = service.models();
            for (const auto& m : models["data"])
              if (m["id"] == req.matches[1].str()) {
                res.set_content(m.dump(), "application/json");
                return;
              }
            throw ApiError(404, "the model '" + req.matches[1].str() + "' does not exist", "model",
                           "invalid_request_error", "model_not_found");
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
        // Most requests end here with their own status. A longer one answers 200 now and sends JSON
        // whitespace (a space a second) before its object: httplib 0.11 cannot tell that a client left
        // until a write fails, and a client that left must free its rows.
        if (c->wait(std::chrono::seconds(2))) {
          res.set_content(c->response(), "application/json");
          return;
        }
        res.set_chunked_content_provider(
            "application/json",
            [c](size_t, httplib::DataSink& sink) {
              if (!c->wait(std::chrono::seconds(1))) {
                if (sink.write(" ", 1)) return true;
                c->cancel();
                return false;
              }
              std::string body;
              try {
                body = c->response();
              } catch (const ApiError& e) {
                body = e.body().dump();  // the status is sent already
              }
              if (!sink.write(body.data(), body.size())) return false;
              sink.done();
              return true;
            },
            [c](bool success) {
              if (!success) c->cancel();
            });
        return;
      }
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream",
          [c](size_t, httplib::DataSink& sink) {
            auto event = c->next_event();  // or, after a second of held-back text, an SSE comment
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
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::cerr << "[serve] model '" << service.model_id() << "' on http://" << host << ":" << bound << std::endl;
  auto listening = std::async(std::launch::async, [&] { return svr.listen_after_bind(); });
  // On SIGTERM / SIGINT: new requests get 503 while the accepted ones run on for --shutdown-timeout
  // seconds; what is left then is cancelled (finish_reason "abort", streams get their last chunks), and
  // the server stops once every response is out (5 s at most for that).
  while (listening.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
    if (!g_stop) continue;
    std::cerr << "[serve] stopping: " << service.open_completions() << " request(s) in flight" << std::endl;
    service.stop_accepting();
    const auto open_done = [&] { return service.open_completions() == 0; };
    auto now = std::chrono::steady_clock::now();
    if (!wait_until(open_done, now + std::chrono::seconds(shutdown_timeout))) {
      std::cerr << "[serve] cancelling " << service.open_completions() << " request(s) after --shutdown-timeout "
                << shutdown_timeout << " s" << std::endl;
      service.shutdown();
      wait_until(open_done, std::chrono::steady_clock::now() + std::chrono::seconds(5));
    }
    svr.stop();
    break;
  }
  listening.wait();
  std::cerr << "[serve] stopped" << std::endl;
  return 0;
}

}  // namespace mlxgp::cli
