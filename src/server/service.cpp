// Service: the endpoints' logic over one loaded model and the worker that owns its BatchEngine.
#include <ctime>
#include <filesystem>

#include "mlxgp/error.h"
#include "mlxgp/server.h"

#include "mlxgp/cache_options.h"

#include "server/chat_prompt.h"
#include "server/chat_tools.h"
#include "mlxgp/chat_template.h"
#include "server/completion_state.h"
#include "server/metrics.h"
#include "mlxgp/distributed.h"
#include "server/request.h"
#include "server/worker.h"
#include "server/speculation.h"
#include "generation/speculative/draft_model.h"

namespace mlxgp::server {

using ojson = nlohmann::ordered_json;

namespace {

std::string default_model_id(const LoadedModel& m) {
  std::filesystem::path p(m.source);
  if (p.filename().empty()) p = p.parent_path();
  return p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
}

void only_fields(const ojson& body, std::initializer_list<const char*> allowed) {
  for (auto& [key, _] : body.items()) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || key == a;
    if (!ok) throw ApiError(400, "unknown field '" + key + "'", key);
  }
}

// The template a request with tools renders (a tokenizer without a usable one refuses chat requests later).
std::string tools_template(const ServiceOptions& o, const LoadedModel& m) {
  if (!o.chat_template.empty() || !m.tokenizer) return o.chat_template;
  try {
    return m.tokenizer->select_chat_template("", /*with_tools=*/true);
  } catch (const Error&) {
    return "";
  }
}

// --tool-parser, else the format the chat template used with tools asks for (docs/server.md).
RequestLimits request_limits(const ServiceOptions& o, const LoadedModel& m) {
  const std::string tpl = tools_template(o, m);
  return RequestLimits{o.max_tokens_cap, o.chat_template, o.tool_parser.value_or(tool_call_format_for_template(tpl)),
                       o.reasoning,      o.draft_model,   o.max_batch_rows};
}

SpeculationPolicy speculation_policy(const ServiceOptions& o) { return {o.draft_model, o.speculative_max_rows}; }

bool flag(const ojson& body, const char* key, bool fallback) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  if (!body[key].is_boolean()) throw ApiError(400, std::string("'") + key + "' must be a boolean", key);
  return body[key].get<bool>();
}

}  // namespace

Service::Service(LoadedModel model, ServiceOptions options) : model_(std::move(model)), options_(std::move(options)) {
  if (!model_.model) fail("serve", "no model");
  created_ = static_cast<long long>(std::time(nullptr));
  if (options_.max_batch_rows < 1) fail("serve", "--max-batch must be >= 1");
  if (options_.max_queue < 1) fail("serve", "--max-queue must be >= 1");
  if (options_.model_id.empty()) options_.model_id = default_model_id(model_);
  if (options_.max_tokens_cap < 0) fail("serve", "--max-tokens-cap must be >= 1");
  if (!options_.chat_template.empty()) {
    try {
      ChatTemplate::parse(options_.chat_template);
    } catch (const Error& e) {
      fail("serve", std::string("--chat-template: ") + e.what());
    }
  }
  if (!model_.generation_config_json.empty())
    warnings_ = apply_generation_config_json(base_, model_.generation_config_json, ConfigSource::Model);
  if (const auto& d = options_.kv_cache_dtype) {
    if (!kv_cache_dtype_named(*d))
      fail("serve", "--kv-cache-dtype must be float16, bfloat16 or float32, got '" + *d + "'");
    base_.kv_cache_dtype = d;
  }
  if (options_.speculative_max_rows < 0) fail("serve", "--speculative-max-rows must be >= 0");
  // The draft stays whole on every rank of a tensor-parallel server, as in `generate --tensor-parallel`.
  if (!options_.draft_model.empty()) draft_ = speculative::load_draft(options_.draft_model, *model_.model);
  metrics_ = std::make_shared<Metrics>(options_.max_batch_rows);
  if (options_.tensor_parallel && options_.tensor_parallel->rank() != 0) return;  // follow() instead
  worker_ =
      std::make_shared<Worker>(*model_.model, model_.tokenizer, engine_options_for(options_, draft_),
                               options_.max_queue, metrics_, options_.tensor_parallel, speculation_policy(options_));
}

std::string Service::metrics() const { return metrics_->render(); }

void Service::count_request(const std::string& path, int status) { metrics_->count_request(path, status); }

Service::~Service() {
  if (worker_) worker_->stop();
}

void Service::shutdown() {
  if (worker_) worker_->stop();
}

nlohmann::json Service::models() const {
  nlohmann::json m = {{"id", options_.model_id},
                      {"object", "model"},
                      {"created", created_},
                      {"owned_by", "mlxgp"},
                      {"max_model_len", model_.model->config().max_position_embeddings}};
  return {{"object", "list"}, {"data", nlohmann::json::array({m})}};
}

nlohmann::json Service::health() const {
  return {{"status", draining_ ? "draining" : "ok"}, {"running", worker_->running()}, {"waiting", worker_->waiting()}};
}

nlohmann::json Service::tokenize(const std::string& text) {
  ojson body = parse_body(text);
  check_model(body, options_.model_id);
  only_fields(body, {"model", "prompt", "messages", "add_special_tokens", "add_generation_prompt", "tools"});
  if (!model_.tokenizer) throw ApiError(400, "the model has no tokenizer");
  const bool has_prompt = body.contains("prompt"), has_messages = body.contains("messages");
  if (has_prompt == has_messages) throw ApiError(400, "give exactly one of 'prompt' and 'messages'", "prompt");
  std::vector<int> ids;
  if (has_prompt) {
    if (!body["prompt"].is_string()) throw ApiError(400, "'prompt' must be a string", "prompt");
    if (body.contains("tools")) throw ApiError(400, "'tools' needs 'messages'", "tools");
    if (body.contains("add_generation_prompt"))
      throw ApiError(400, "'add_generation_prompt' needs 'messages'", "add_generation_prompt");
    try {
      ids = model_.tokenizer->encode(body["prompt"].get<std::string>(), flag(body, "add_special_tokens", true));
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "prompt");
    }
  } else {
    if (body.contains("add_special_tokens"))
      throw ApiError(400, "'add_special_tokens' needs 'prompt'", "add_special_tokens");
    ids = chat_prompt_ids(*model_.tokenizer, template_messages(body["messages"]),
                          flag(body, "add_generation_prompt", true), options_.chat_template, template_tools(body));
  }
  return {{"count", ids.size()}, {"max_model_len", model_.model->config().max_position_embeddings}, {"tokens", ids}};
}

nlohmann::json Service::detokenize(const std::string& text) {
  ojson body = parse_body(text);
  check_model(body, options_.model_id);
  only_fields(body, {"model", "tokens"});
  if (!model_.tokenizer) throw ApiError(400, "the model has no tokenizer");
  if (!body.contains("tokens") || !body["tokens"].is_array())
    throw ApiError(400, "'tokens' must be a list of token ids", "tokens");
  std::vector<int> ids;
  for (auto& t : body["tokens"]) {
    if (!t.is_number_integer() || t.get<long long>() < 0 || t.get<long long>() > INT32_MAX)
      throw ApiError(400, "'tokens' must be a list of token ids", "tokens");
    ids.push_back(t.get<int>());
  }
  try {
    return {{"prompt", model_.tokenizer->decode(ids)}};
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "tokens");
  }
}

std::unique_ptr<Completion> Service::start(Endpoint endpoint, const std::string& body) {
  if (draining_) throw ApiError(503, "the server is shutting down");
  ParsedRequest p = parse_request(endpoint, body, model_, base_, options_.model_id, request_limits(options_, model_));
  auto state = std::make_unique<Completion::State>();
  state->worker = worker_;
  state->channel = std::make_shared<Channel>();
  state->head = new_head(endpoint, options_.model_id);
  state->n = p.n;
  state->stop = p.stop;
  state->include_usage = p.include_usage;
  state->top_logprobs = p.top_logprobs;
  state->tokenizer = model_.tokenizer;
  std::vector<BatchRequest> requests = batch_requests(p);
  // Under tensor parallelism every rank must sample alike: rank 0 draws each unseeded request's seed and
  // sends it with the body (follow()).
  nlohmann::json seeds = nlohmann::json::array();
  if (options_.tensor_parallel)
    for (auto& r : requests) {
      if (!r.config.seed) r.config.seed = fresh_random_seed();
      seeds.push_back(*r.config.seed);
    }
  for (auto& ids : p.prompts) state->prompt_tokens.push_back(static_cast<int>(ids.size()));
  const int choices = static_cast<int>(p.prompts.size()) * p.n;
  for (int c = 0; c < choices; ++c) state->trimmers.emplace_back(p.stop);
  state->logprobs.resize(choices);
  state->reply = p.reply;
  if (p.reply.active()) state->replies.assign(choices, ChatReply(p.reply));
  state->delivered.assign(p.prompts.size(), false);
  try {
    // Under tensor parallelism the other ranks rebuild the same requests from the same body.
    std::string replay =
        options_.tensor_parallel
            ? nlohmann::json{{"endpoint", static_cast<int>(endpoint)}, {"body", body}, {"seeds", seeds}}.dump()
            : std::string();
    state->ids = worker_->submit(std::move(requests), state->channel, std::move(replay), p.may_speculate);
  } catch (const ApiError& e) {
    // The engine's refusals (beam search, the context, ...) name no field: find it in the message.
    if (e.status() != 400 || !e.param().empty()) throw;
    const std::string what = e.what();
    std::string param = refused_field(what, p.fields);
    if (param.empty() && std::string(e.what()).find("prompt") != std::string::npos)
      param = endpoint == Endpoint::ChatCompletions ? "messages" : "prompt";
    // A required / named tool_choice's schema is the tools' parameters (chat_tools.h).
    if (param.empty() && p.reply.tools && p.reply.tools->kind != ToolCallRules::Kind::Format &&
        std::string(e.what()).find("json_schema") != std::string::npos)
      param = "tools";
    throw ApiError(400, e.what(), param);
  }
  for (int n : state->prompt_tokens) metrics_->add_prompt_tokens(n);
  state->open = open_;
  ++*open_;
  return std::unique_ptr<Completion>(new Completion(std::move(state), p.stream));
}

void Service::follow() {
  if (!options_.tensor_parallel || options_.tensor_parallel->rank() == 0)
    fail("serve", "follow() runs on the ranks other than 0 of a tensor-parallel server");
  const auto& group = *options_.tensor_parallel;
  const BatchEngineOptions engine_options = engine_options_for(options_, draft_);  // rank 0's, prefix cache included
  auto engine = std::make_unique<BatchEngine>(*model_.model, model_.tokenizer, engine_options);
  // Mirrors Worker::loop on rank 0 step for step, so both engines hold the same rows and every forward's
  // collectives pair up; the tokens are rank 0's to send.
  while (true) {
    const std::string text = broadcast_text_from_rank0(group, "");
    if (!text.empty()) {
      const auto plan = nlohmann::json::parse(text);
      if (plan.at("stop").get<bool>()) return;
      for (const auto& sub : plan.at("subs")) {
        std::vector<int> ids;
        try {
          const auto p =
              parse_request(static_cast<Endpoint>(sub.at("endpoint").get<int>()), sub.at("body").get<std::string>(),
                            model_, base_, options_.model_id, request_limits(options_, model_));
          auto requests = batch_requests(p);
          const auto& seeds = sub.at("seeds");
          for (size_t i = 0; i < requests.size() && i < seeds.size(); ++i)
            requests[i].config.seed = seeds[i].get<uint64_t>();
          for (auto& r : requests)  // as Worker::take_in
            ids.push_back(
                submit_maybe_speculating(*engine, std::move(r), p.may_speculate, speculation_policy(options_)));
        } catch (const std::exception&) {
          // Rank 0 refused the same request at the same prompt (Worker::take_in).
          for (int id : ids) {
            engine->cancel(id);
            engine->take_result(id);
          }
        }
      }
      for (const auto& id : plan.at("cancels")) {
        engine->cancel(id.get<int>());
        engine->take_result(id.get<int>());
      }
    }
    if (!engine->busy()) continue;
    try {
      for (int id : engine->step()) engine->take_result(id);
    } catch (const std::exception&) {
      engine = std::make_unique<BatchEngine>(*model_.model, model_.tokenizer, engine_options);  // Worker::fail_all
    }
  }
}

}  // namespace mlxgp::server
