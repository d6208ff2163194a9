#include "server/request.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "mlxgp/error.h"
#include "server/chat_prompt.h"
#include "server/chat_tools.h"
#include "server/known_keys.h"

namespace mlxgp::server {

using ojson = nlohmann::ordered_json;

namespace {

// OpenAI's default max_tokens for completions.
constexpr int kCompletionsDefaultMaxTokens = 16;

// OpenAI fields that this slice does not implement yet: refused by name unless null / false.
const std::set<std::string>& not_yet_fields() {
  static const std::set<std::string> k = {"echo",       "suffix",     "best_of",          "audio",
                                          "modalities", "prediction", "reasoning_effort", "web_search_options"};
  return k;
}

// GenerationConfig fields that cannot run in the server's shared batch or whose outputs the OpenAI
// formats have no place for.
const std::set<std::string>& server_refused_fields() {
  // draft_model: a client does not name files on the server (--draft-model does).
  static const std::set<std::string> k = {"output_scores", "output_logits", "output_logprobs", "draft_model"};
  return k;
}

// "Not asked for": null or false (best_of 1 and an empty suffix too).
bool falsy(const std::string& key, const ojson& v) {
  if (key == "best_of" && v.is_number_integer() && v.get<long long>() == 1) return true;
  if (key == "suffix" && v.is_string() && v.get<std::string>().empty()) return true;
  return v.is_null() || (v.is_boolean() && !v.get<bool>());
}

int positive_int(const ojson& v, const std::string& name, int lo, int hi) {
  if (!v.is_number_integer()) throw ApiError(400, "'" + name + "' must be an integer", name);
  const long long x = v.get<long long>();
  if (x < lo || x > hi)
    throw ApiError(400, "'" + name + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi), name);
  return static_cast<int>(x);
}

std::vector<int> token_list(const ojson& v, const std::string& name, int vocab) {
  std::vector<int> ids;
  for (auto& t : v) {
    if (!t.is_number_integer()) throw ApiError(400, "'" + name + "' must hold token ids (integers)", name);
    const long long id = t.get<long long>();
    if (id < 0 || id >= vocab)
      throw ApiError(400, "token id " + t.dump() + " is outside the vocabulary (size " + std::to_string(vocab) + ")",
                     name);
    ids.push_back(static_cast<int>(id));
  }
  if (ids.empty()) throw ApiError(400, "'" + name + "' holds an empty token list", name);
  return ids;
}

std::vector<int> encode(const LoadedModel& model, const std::string& text) {
  if (!model.tokenizer) throw ApiError(400, "the model has no tokenizer; send the prompt as token ids", "prompt");
  try {
    return model.tokenizer->encode(text);
  } catch (const Error& e) {
    throw ApiError(400, without_component(e.what()), "prompt");
  }
}

// "prompt": a string, a token list, or a list of either.
std::vector<std::vector<int>> completion_prompts(const ojson& p, const LoadedModel& model) {
  if (p.is_string()) return {encode(model, p.get<std::string>())};
  if (!p.is_array() || p.empty())
    throw ApiError(400, "'prompt' must be a string, a list of token ids, or a non-empty list of them", "prompt");
  const int vocab = model.model->config().vocab_size;
  if (p[0].is_number_integer()) return {token_list(p, "prompt", vocab)};
  std::vector<std::vector<int>> out;
  for (auto& item : p) {
    if (item.is_string()) {
      out.push_back(encode(model, item.get<std::string>()));
    } else if (item.is_array()) {
      out.push_back(token_list(item, "prompt", vocab));
    } else {
      throw ApiError(400, "'prompt' must be a string, a list of token ids, or a list of them", "prompt");
    }
  }
  return out;
}

// OpenAI response_format: {"type": "text"}, {"type": "json_object"} or {"type": "json_schema",
// "json_schema": {"name": ..., "schema": {...}, "strict": ...}} -> the structured-output fields.
void apply_response_format(GenerationConfig& config, const ojson& f) {
  const std::string param = "response_format";
  if (!f.is_object() || !f.contains("type") || !f["type"].is_string())
    throw ApiError(400, "'response_format' must be an object with a 'type'", param);
  const std::string type = f["type"].get<std::string>();
  if (type == "text") {
    refuse_unknown_keys(f, {"type"}, param);
    return;
  }
  if (type == "json_object") {
    refuse_unknown_keys(f, {"type"}, param);  // llama.cpp's "schema" here is not OpenAI's: json_schema is
    config.json_object = true;
  } else if (type == "json_schema") {
    refuse_unknown_keys(f, {"type", "json_schema"}, param);
    const ojson* s = f.contains("json_schema") ? &f["json_schema"] : nullptr;
    if (!s || !s->is_object() || !s->contains("schema") || !((*s)["schema"].is_object() || (*s)["schema"].is_boolean()))
      throw ApiError(400, "'response_format' of type json_schema needs 'json_schema': {'name': ..., 'schema': {...}}",
                     param);
    refuse_unknown_keys(*s, {"name", "schema", "strict", "description"}, param + ".json_schema");
    config.json_schema = (*s)["schema"].dump();  // ordered: properties are generated in the schema's order
  } else {
    throw ApiError(400, "'response_format' type must be text, json_object or json_schema, got '" + type + "'", param);
  }
}

void apply_hf_field(GenerationConfig& config, const std::string& key, const ojson& value) {
  ojson one = ojson::object();
  one[key] = value;
  try {
    apply_generation_config_json(config, one.dump(), ConfigSource::User);
  } catch (const Error& e) {
    throw ApiError(400, without_component(e.what()), key);
  }
}

}  // namespace

std::string named_field(const std::string& message, const std::vector<std::string>& fields) {
  for (auto& key : fields)
    if (message.find("'" + key + "'") != std::string::npos) return key;
  // Else the key as a whole word ("n" must not match inside "num_beams").
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (auto& key : fields)
    for (size_t p = message.find(key); p != std::string::npos; p = message.find(key, p + 1))
      if ((p == 0 || !word(message[p - 1])) && (p + key.size() == message.size() || !word(message[p + key.size()])))
        return key;
  return {};
}

std::string refused_field(const std::string& message, const std::vector<std::string>& fields) {
  auto first_given = [&](std::initializer_list<const char*> keys) -> std::string {
    for (const char* k : keys)
      if (std::find(fields.begin(), fields.end(), k) != fields.end()) return k;
    return {};
  };
  std::string param;
  if (message.find("top_logprobs") != std::string::npos) param = first_given({"top_logprobs", "logprobs"});
  if (param.empty() && message.find("speculative") != std::string::npos)
    param = first_given({"prompt_lookup_num_tokens", "draft_layers", "use_speculative"});
  if (param.empty()) param = named_field(message, fields);
  // The names the library's messages use (HF's, the cache's words), for the fields the request gave.
  for (auto [said, field] : {std::pair{"num_return_sequences", "n"},
                             {"max_new_tokens", "max_tokens"},
                             {"max_new_tokens", "max_completion_tokens"},
                             {"stop_strings", "stop"},
                             {"kv group size", "kv_group_size"},
                             {"kv keep", "kv_keep"}})
    if (param.empty() && named_field(message, {said}) == said) param = first_given({field});
  return param;
}

// The offset of the first byte where `s` stops being UTF-8 (RFC 3629: no overlong forms, surrogates or
// code points above U+10FFFF), or npos. JSON text is UTF-8 (RFC 8259), and the JSON library would
// only notice when it writes such a string back out.
static size_t invalid_utf8_at(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c == 0xED) len = 3, hi = 0x9F;  // no surrogates
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else return i;
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (int k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += len;
  }
  return std::string::npos;
}

ojson parse_body(const std::string& body) {
  if (const size_t at = invalid_utf8_at(body); at != std::string::npos)
    throw ApiError(400, "the body is not valid UTF-8 (byte " + std::to_string(at) + ")");
  ojson j;
  try {
    j = ojson::parse(body);
  } catch (const ojson::exception& e) {  // parse errors and number overflow (out_of_range 406)
    throw ApiError(400, std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, "the body must be a JSON object");
  return j;
}

void check_model(const ojson& body, const std::string& model_id) {
  if (!body.contains("model") || body["model"].is_null()) return;
  if (!body["model"].is_string()) throw ApiError(400, "'model' must be a string", "model");
  const std::string m = body["model"].get<std::string>();
  if (m != model_id)
    throw ApiError(404, "the model '" + m + "' does not exist; this server serves '" + model_id + "'", "model",
                   "invalid_request_error", "model_not_found");
}

ParsedRequest parse_request(Endpoint endpoint, const std::string& text, const LoadedModel& model,
                            const GenerationConfig& base, const std::string& model_id, const RequestLimits& limits) {
  const bool chat = endpoint == Endpoint::ChatCompletions;
  ojson body = parse_body(text);
  check_model(body, model_id);
  // max_completion_tokens is chat's newer name for max_tokens; completions take it too, as vLLM does.
  std::set<std::string> openai = {"model", "stream", "stream_options", "max_tokens", "max_completion_tokens",
                                  "n",     "stop",   "temperature",    "user",       "logprobs"};
  openai.insert(chat ? "messages" : "prompt");
  if (chat) openai.insert("top_logprobs");

  ParsedRequest r;
  r.endpoint = endpoint;
  for (auto& [key, _] : body.items()) r.fields.push_back(key);
  r.config = base;
  // HF GenerationConfig fields (OpenAI's top_p, seed, presence_penalty, frequency_penalty, logit_bias,
  // min_p and top_k share their names), with the CLI's validation.
  for (auto& [key, value] : body.items()) {
    if (openai.count(key)) continue;
    if (is_tool_field(key)) {  // chat_tools.cpp reads them
      if (chat || falsy(key, value)) continue;
      throw ApiError(400, "'" + key + "' applies to /v1/chat/completions only", key);
    }
    if (not_yet_fields().count(key)) {
      if (falsy(key, value)) continue;
      throw ApiError(400, "'" + key + "' is not supported by this server yet", key);
    }
    if (key == "draft_model" && !falsy(key, value))
      throw ApiError(400, "'draft_model' would name a file on the server: start it with --draft-model instead", key);
    if (server_refused_fields().count(key)) {
      if (falsy(key, value)) continue;
      throw ApiError(400,
                     "'" + key +
                         "' is not supported by the server (it cannot share the continuous batch "
                         "or has no place in the OpenAI response)",
                     key);
    }
    if (value.is_null()) continue;  // OpenAI clients send null for "not set"
    if (key == "response_format") {
      apply_response_format(r.config, value);
      continue;
    }
    if (key == "top_k" && value.is_number_integer() && value.get<long long>() == -1) {  // vLLM: -1 = off
      apply_hf_field(r.config, key, 0);
      continue;
    }
    if (key == "logit_bias" && value.is_object())
      for (auto& [tok, bias] : value.items())
        if (bias.is_number() && (bias.get<double>() < -100 || bias.get<double>() > 100))
          throw ApiError(400, "'logit_bias' values must be between -100 and 100 (token " + tok + ")", "logit_bias");
    apply_hf_field(r.config, key, value);
  }
  auto given = [&](const char* k) { return body.contains(k) && !body[k].is_null(); };

  // max_tokens / max_completion_tokens (HF max_new_tokens).
  std::string max_key;
  for (const char* k : {"max_tokens", "max_completion_tokens"}) {
    if (!openai.count(k) || !given(k)) continue;
    if (!max_key.empty()) throw ApiError(400, "pass only one of 'max_tokens' and 'max_completion_tokens'", k);
    if (given("max_new_tokens"))
      throw ApiError(400, std::string("pass only one of '") + k + "' and 'max_new_tokens'", k);
    max_key = k;
    r.config.max_new_tokens = positive_int(body[k], k, 1, INT32_MAX);
  }
  if (given("n")) {
    if (given("num_return_sequences")) throw ApiError(400, "pass only one of 'n' and 'num_return_sequences'", "n");
    r.config.num_return_sequences = positive_int(body["n"], "n", 1, 128);
  }
  r.n = r.config.num_return_sequences;
  if (r.n > 128) throw ApiError(400, "at most 128 choices per prompt", given("n") ? "n" : "num_return_sequences");
  if (given("stop")) {
    if (given("stop_strings")) throw ApiError(400, "pass only one of 'stop' and 'stop_strings'", "stop");
    const ojson& s = body["stop"];
    if (s.is_string()) {
      r.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      for (auto& x : s) {
        if (!x.is_string()) throw ApiError(400, "'stop' must be a string or a list of strings", "stop");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      throw ApiError(400, "'stop' must be a string or a list of strings", "stop");
    }
    if (r.stop.size() > 16) throw ApiError(400, "'stop' takes at most 16 strings", "stop");
    for (auto& x : r.stop)
      if (x.empty()) throw ApiError(400, "'stop' strings must not be empty", "stop");
    if (!r.stop.empty()) r.config.stop_strings = r.stop;
  }
  // temperature as the CLI reads it: 0 means greedy, T > 0 samples at T.
  if (given("temperature")) {
    const ojson& t = body["temperature"];
    if (!t.is_number()) throw ApiError(400, "'temperature' must be a number", "temperature");
    const double v = t.get<double>();
    if (v < 0) throw ApiError(400, "'temperature' must be >= 0", "temperature");
    if (v == 0) {
      if (given("do_sample") && body["do_sample"] == true)
        throw ApiError(400, "'temperature' 0 means greedy and cannot be combined with do_sample", "temperature");
      r.config.do_sample = false;
      r.config.temperature = 1.0;
    } else {
      if (given("do_sample") && body["do_sample"] == false)
        throw ApiError(400, "'temperature' above 0 samples and cannot be combined with do_sample false", "temperature");
      r.config.do_sample = true;
      r.config.temperature = v;
    }
  }
  if (given("stream")) {
    if (!body["stream"].is_boolean()) throw ApiError(400, "'stream' must be a boolean", "stream");
    r.stream = body["stream"].get<bool>();
  }
  if (given("stream_options")) {
    const ojson& so = body["stream_options"];
    if (!so.is_object()) throw ApiError(400, "'stream_options' must be an object", "stream_options");
    if (!r.stream) throw ApiError(400, "'stream_options' needs 'stream': true", "stream_options");
    for (auto& [k, v] : so.items()) {
      if (k != "include_usage") throw ApiError(400, "stream_options: unknown field '" + k + "'", "stream_options");
      if (!v.is_boolean()) throw ApiError(400, "'stream_options.include_usage' must be a boolean", "stream_options");
      r.include_usage = v.get<bool>();
    }
  }
  if (given("user") && !body["user"].is_string()) throw ApiError(400, "'user' must be a string", "user");
  // logprobs: chat takes logprobs (bool) and top_logprobs (0..20); completions takes logprobs (0..20).
  if (chat) {
    if (given("logprobs")) {
      if (!body["logprobs"].is_boolean()) throw ApiError(400, "'logprobs' must be a boolean", "logprobs");
      if (body["logprobs"].get<bool>()) r.top_logprobs = 0;
    }
    if (given("top_logprobs")) {
      const int k = positive_int(body["top_logprobs"], "top_logprobs", 0, 20);
      if (r.top_logprobs < 0) throw ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs");
      r.top_logprobs = k;
    }
  } else if (given("logprobs")) {
    r.top_logprobs = positive_int(body["logprobs"], "logprobs", 0, 20);
  }

  // Prompts.
  if (chat) {
    if (!given("messages")) throw ApiError(400, "'messages' is required", "messages");
    if (!model.tokenizer)
      throw ApiError(400, "the model has no tokenizer; use /v1/completions with token ids", "messages");
    const ChatTools tools = parse_chat_tools(body, limits.tool_format);
    ChatPrompt prompt = render_chat_prompt(*model.tokenizer, template_messages(body["messages"]), true,
                                           limits.chat_template, tools.tools);
    r.prompts.push_back(std::move(prompt.ids));
    r.reply = chat_reply_rules(tools, prompt.text, limits.reasoning);
    apply_tool_schema(r.config, tools);
  } else {
    if (!given("prompt")) throw ApiError(400, "'prompt' is required", "prompt");
    r.prompts = completion_prompts(body["prompt"], model);
  }
  const int context = model.model->config().max_position_embeddings;
  // Without a length: completions get OpenAI's 16 tokens, chat replies run to EOS (the context bounds them).
  if (!r.config.max_new_tokens && !given("max_length")) {
    r.config.max_new_tokens = chat ? (context > 0 ? context : 4096) : kCompletionsDefaultMaxTokens;
  }
  // --max-tokens-cap clamps (never refuses): a longer request ends with finish_reason "length".
  if (limits.max_tokens_cap > 0) {
    if (r.config.max_new_tokens) {
      r.config.max_new_tokens = std::min(*r.config.max_new_tokens, limits.max_tokens_cap);
    } else {  // max_length alone: the budget of the longest prompt, clamped
      size_t longest = 0;
      for (auto& p : r.prompts) longest = std::max(longest, p.size());
      const long long left = static_cast<long long>(r.config.max_length) - static_cast<long long>(longest);
      if (left > limits.max_tokens_cap) r.config.max_new_tokens = limits.max_tokens_cap;
    }
  }
  // A length asked for (after --max-tokens-cap, which never refuses) that the context cannot hold is
  // refused, as OpenAI and vLLM do, rather than cut short.
  if (!max_key.empty() && context > 0)
    for (auto& p : r.prompts)  // (a prompt the context cannot hold at all is the prompt's fault: the engine's check)
      if (static_cast<long long>(p.size()) < context &&
          static_cast<long long>(p.size()) + *r.config.max_new_tokens > context)
        throw ApiError(400,
                       "the model's context is " + std::to_string(context) + " tokens, but " +
                           std::to_string(p.size() + *r.config.max_new_tokens) + " were asked for (" +
                           std::to_string(p.size()) + " in the " + (chat ? "messages" : "prompt") + ", " +
                           std::to_string(*r.config.max_new_tokens) + " in '" + max_key + "')",
                       max_key);
  // Speculative decoding asked for by the body uses the server's draft (or the body's draft_layers).
  if (r.config.use_speculative && !r.config.draft_layers) {
    if (limits.draft_model.empty())
      throw ApiError(400, "'use_speculative' needs the server's --draft-model, or 'draft_layers'", "use_speculative");
    r.config.draft_model = limits.draft_model;
  }
  const bool chose = given("use_speculative") || given("prompt_lookup_num_tokens") || given("draft_layers");
  r.may_speculate = !limits.draft_model.empty() && !chose && !r.config.do_sample && r.config.num_beams <= 1 &&
                    r.n == 1 && r.top_logprobs < 0 && (!r.config.guidance_scale || *r.config.guidance_scale == 1.0);
  // The server's --kv-cache-dtype is a default for standard caches: a request that asks for a quantized or
  // rotating cache (formats of their own) and names no dtype gets that cache.
  if (!given("kv_cache_dtype") && (r.config.kv_bits || r.config.max_kv_size)) r.config.kv_cache_dtype.reset();
  // The engine runs a search wider than the batch alone, holding up every other stream while it lasts.
  if (limits.max_rows > 0 && r.config.num_beams > limits.max_rows)
    throw ApiError(400,
                   "'num_beams' " + std::to_string(r.config.num_beams) + " exceeds the server's --max-batch of " +
                       std::to_string(limits.max_rows) + " rows (each beam is a row)",
                   "num_beams");
  // Beam search knows its best sequences only at the end (transformers does not stream beams either).
  if (r.stream && r.config.num_beams > 1)
    throw ApiError(400, "'num_beams' > 1 cannot stream: beam search knows its best sequences only at the end",
                   "num_beams");
  try {
    validate(r.config);
  } catch (const Error& e) {
    const std::string msg = without_component(e.what());
    throw ApiError(400, msg, refused_field(msg, r.fields));
  }
  return r;
}

std::vector<BatchRequest> batch_requests(const ParsedRequest& p) {
  std::vector<BatchRequest> requests;
  for (auto& ids : p.prompts) {
    BatchRequest r;
    r.prompt_ids = ids;
    r.config = p.config;
    r.top_logprobs = p.top_logprobs;
    requests.push_back(std::move(r));
  }
  return requests;
}

}  // namespace mlxgp::server
