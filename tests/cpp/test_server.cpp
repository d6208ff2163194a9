// The server's library side without HTTP: stop-string trimming, the API key check, error objects,
// chat messages and request parsing (with the default GGUF when it is present), the Prometheus metrics,
// the logprobs bookkeeping and the engine's per-token top logprobs.
#include <gtest/gtest.h>

#include <filesystem>

#include "../../src/server/chat_prompt.h"
#include "../../src/server/logprobs.h"
#include "../../src/server/metrics.h"
#include "../../src/server/request.h"
#include "../../src/server/stop_text.h"
#include "mlxgp/batch_engine.h"
#include "mlxgp/loader.h"
#include "mlxgp/server.h"

namespace mlxgp::server {
namespace {

namespace fs = std::filesystem;

TEST(ServerStop, PiecesConcatenateToTheCutText) {
  const std::vector<std::string> stops = {"\n\n", "END", "é!"};
  const std::string text = "Paris is nice, é; caf\xc3\xa9! then END and\n\nmore";
  // Every split of the text into pieces of 1..4 bytes streams the same cut text.
  for (size_t step = 1; step <= 4; ++step) {
    StopTrimmer t(stops);
    std::string out;
    for (size_t i = 0; i < text.size(); i += step) out += t.push(text.substr(i, step));
    out += t.finish();
    EXPECT_EQ(out, cut_at_stop(text, stops)) << step;
    EXPECT_TRUE(t.stopped());
  }
  EXPECT_EQ(cut_at_stop(text, stops), "Paris is nice, é; caf");
  StopTrimmer none({});
  EXPECT_EQ(none.push("abc"), "abc");  // nothing held back without stop strings
  EXPECT_EQ(none.finish(), "");
  StopTrimmer held({"xyz"});
  EXPECT_EQ(held.push("abcxy"), "abc");  // "xy" may begin "xyz"
  EXPECT_EQ(held.push("w"), "x");        // the last 2 bytes are always held back
  EXPECT_EQ(held.finish(), "yw");
  EXPECT_FALSE(held.stopped());
}

TEST(ServerAuth, BearerMatchesExactly) {
  EXPECT_TRUE(bearer_matches("Bearer k3y", "k3y"));
  EXPECT_FALSE(bearer_matches("Bearer k3", "k3y"));
  EXPECT_FALSE(bearer_matches("Bearer k3yy", "k3y"));
  EXPECT_FALSE(bearer_matches("k3y", "k3y"));
  EXPECT_FALSE(bearer_matches("", "k3y"));
}

TEST(ServerErrors, RefusalsNameTheirField) {
  const std::vector<std::string> fields = {"model", "n", "prompt", "num_beams"};
  EXPECT_EQ(named_field("beam search (num_beams > 1) cannot share a batch", fields), "num_beams");
  EXPECT_EQ(named_field("field 'n' must be >= 1", fields), "n");
  EXPECT_EQ(named_field("prompt has 9000 tokens", fields), "prompt");
  EXPECT_EQ(named_field("something else entirely", {"x"}), "");
}

TEST(ServerErrors, OpenAiErrorObject) {
  auto body = ApiError(400, "bad", "temperature").body();
  EXPECT_EQ(body["error"]["message"], "bad");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["param"], "temperature");
  EXPECT_TRUE(body["error"]["code"].is_null());
  EXPECT_EQ(ApiError(429, "full").body()["error"]["type"], "rate_limit_error");
  EXPECT_TRUE(ApiError(401, "no").body()["error"]["param"].is_null());
}

std::string param_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status() / 100, 4) << e.what();
    return e.body()["error"]["param"].is_null() ? "" : e.body()["error"]["param"].get<std::string>();
  }
  ADD_FAILURE() << "expected an ApiError";
  return "";
}

TEST(ServerMessages, TextPartsJoinAndBadFieldsAreNamed) {
  using ojson = nlohmann::ordered_json;
  auto m = template_messages(ojson::parse(
      R"([{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":null}])"));
  EXPECT_EQ(m[0]["content"], "ab");
  EXPECT_EQ(m[1]["content"], "");
  EXPECT_EQ(param_of([] { template_messages(ojson::parse(R"([{"role":"user","content":"x","mood":1}])")); }),
            "messages[0].mood");
  EXPECT_EQ(param_of([] { template_messages(ojson::parse(R"([{"content":"x"}])")); }), "messages[0].role");
  EXPECT_EQ(param_of([] {
              template_messages(ojson::parse(R"([{"role":"user","content":[{"type":"image_url","image_url":{}}]}])"));
            }),
            "messages[0].content[0]");
  EXPECT_EQ(param_of([] { template_messages(ojson::array()); }), "messages");
}

class ServerRequest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto gguf = fs::path(MLXGP_CACHE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
    if (fs::exists(gguf)) model_ = new LoadedModel(load(gguf.string()));
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  void SetUp() override {
    if (!model_) GTEST_SKIP() << "default GGUF missing (scripts/setup.sh)";
  }
  ParsedRequest parse(Endpoint e, const std::string& body) {
    return parse_request(e, body, *model_, GenerationConfig(), "m");
  }
  std::string param(Endpoint e, const std::string& body) {
    return param_of([&] { parse(e, body); });
  }
  static LoadedModel* model_;
};
LoadedModel* ServerRequest::model_ = nullptr;

TEST_F(ServerRequest, OpenAiFieldsMapOntoTheConfig) {
  auto r = parse(Endpoint::Completions,
                 R"({"model":"m","prompt":"Hi","max_tokens":7,"temperature":0.5,"top_k":-1,"stop":"\n","seed":3,
                     "presence_penalty":0.5,"logit_bias":{"11":-100},"repetition_penalty":1.2,"user":"u"})");
  EXPECT_EQ(r.prompts, (std::vector<std::vector<int>>{model_->tokenizer->encode("Hi")}));
  EXPECT_EQ(*r.config.max_new_tokens, 7);
  EXPECT_TRUE(r.config.do_sample);
  EXPECT_DOUBLE_EQ(r.config.temperature, 0.5);
  EXPECT_EQ(r.config.top_k, 0);
  EXPECT_EQ(r.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(*r.config.stop_strings, std::vector<std::string>{"\n"});
  EXPECT_EQ(*r.config.seed, 3u);
  EXPECT_DOUBLE_EQ(r.config.presence_penalty, 0.5);
  EXPECT_DOUBLE_EQ(r.config.repetition_penalty, 1.2);
  ASSERT_TRUE(r.config.logit_bias);
  EXPECT_EQ(r.config.logit_bias->at(0).first, 11);
  auto greedy = parse(Endpoint::Completions, R"({"prompt":[1,2,3],"temperature":0})");
  EXPECT_FALSE(greedy.config.do_sample);
  EXPECT_EQ(*greedy.config.max_new_tokens, 16);  // OpenAI's completions default
  auto chat =
      parse(Endpoint::ChatCompletions,
            R"({"messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}})");
  EXPECT_TRUE(chat.stream && chat.include_usage);
  EXPECT_EQ(*chat.config.max_new_tokens, model_->model->config().max_position_embeddings);
  auto several = parse(Endpoint::Completions, R"({"prompt":["a",[5,6]],"n":2,"temperature":1})");
  EXPECT_EQ(several.prompts.size(), 2u);
  EXPECT_EQ(several.n, 2);
}

TEST_F(ServerRequest, BadFieldsAreNamed) {
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":"Hi","nope":1})"), "nope");
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":"Hi","messages":[]})"), "messages");
  EXPECT_EQ(param(Endpoint::ChatCompletions, R"({"messages":[{"role":"user","content":"x"}],"prompt":"Hi"})"),
            "prompt");
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":"Hi","temperature":"hot"})"), "temperature");
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":"Hi","top_p":2})"), "top_p");
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":"Hi","max_tokens":3,"max_new_tokens":3})"), "max_tokens");
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":"Hi","logprobs":21})"), "logprobs");
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":"Hi","logprobs":true})"), "logprobs");
  EXPECT_EQ(param(Endpoint::ChatCompletions, R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})"),
            "top_logprobs");
  EXPECT_EQ(param(Endpoint::ChatCompletions, R"({"messages":[{"role":"user","content":"x"}],"logprobs":2})"),
            "logprobs");
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":"Hi","tools":[{"type":"function"}]})"), "tools");
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":"Hi","output_scores":true})"), "output_scores");
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":"Hi","draft_model":"/etc/passwd"})"), "draft_model");
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":"Hi","logit_bias":{"5":500}})"), "logit_bias");
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":"Hi","stream_options":{"include_usage":true}})"),
            "stream_options");
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":"Hi","stop":["ok",""]})"), "stop");
  EXPECT_EQ(param(Endpoint::Completions, R"({"prompt":[]})"), "prompt");
  EXPECT_EQ(param(Endpoint::Completions, R"({"max_tokens":3})"), "prompt");
  try {
    parse(Endpoint::Completions, R"({"prompt":"Hi","model":"other"})");
    ADD_FAILURE();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 404);
  }
  // Accepted no-ops: falsy not-yet fields.
  EXPECT_NO_THROW(parse(Endpoint::Completions, R"({"prompt":"Hi","logprobs":null,"echo":false,"best_of":1})"));
}

TEST_F(ServerRequest, LogprobsAndLimits) {
  EXPECT_EQ(parse(Endpoint::Completions, R"({"prompt":"Hi"})").top_logprobs, -1);
  EXPECT_EQ(parse(Endpoint::Completions, R"({"prompt":"Hi","logprobs":0})").top_logprobs, 0);
  EXPECT_EQ(parse(Endpoint::Completions, R"({"prompt":"Hi","logprobs":5})").top_logprobs, 5);
  const std::string msgs = R"("messages":[{"role":"user","content":"Hi"}])";
  EXPECT_EQ(parse(Endpoint::ChatCompletions, "{" + msgs + R"(,"logprobs":true})").top_logprobs, 0);
  EXPECT_EQ(parse(Endpoint::ChatCompletions, "{" + msgs + R"(,"logprobs":true,"top_logprobs":4})").top_logprobs, 4);
  EXPECT_EQ(parse(Endpoint::ChatCompletions, "{" + msgs + R"(,"logprobs":false})").top_logprobs, -1);
  // --max-tokens-cap clamps, the default included.
  RequestLimits cap{5, {}};
  auto r = parse_request(Endpoint::Completions, R"({"prompt":"Hi","max_tokens":100})", *model_, GenerationConfig(), "m",
                         cap);
  EXPECT_EQ(*r.config.max_new_tokens, 5);
  r = parse_request(Endpoint::Completions, R"({"prompt":"Hi","max_tokens":3})", *model_, GenerationConfig(), "m", cap);
  EXPECT_EQ(*r.config.max_new_tokens, 3);
  r = parse_request(Endpoint::ChatCompletions, "{" + msgs + "}", *model_, GenerationConfig(), "m", cap);
  EXPECT_EQ(*r.config.max_new_tokens, 5);
  r = parse_request(Endpoint::Completions, R"({"prompt":"Hi","max_length":200})", *model_, GenerationConfig(), "m",
                    cap);
  EXPECT_EQ(*r.config.max_new_tokens, 5);
  // --chat-template replaces the model's.
  RequestLimits tpl{0, "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"};
  r = parse_request(Endpoint::ChatCompletions, "{" + msgs + "}", *model_, GenerationConfig(), "m", tpl);
  EXPECT_EQ(r.prompts.at(0), model_->tokenizer->encode("[Hi]", false));
}

TEST_F(ServerRequest, EngineTopLogprobsMatchOutputLogprobs) {
  BatchEngine engine(*model_->model, model_->tokenizer);
  for (int k : {0, 4}) {
    BatchRequest req;
    req.prompt_ids = model_->tokenizer->encode("The capital of France is");
    req.config.max_new_tokens = 6;
    req.config.output_logprobs = true;
    req.top_logprobs = k;
    std::vector<std::pair<int, TokenLogprobs>> seen;
    req.on_logprobs = [&](int row, int token, const TokenLogprobs& lp) {
      EXPECT_EQ(row, 0);
      seen.emplace_back(token, lp);
    };
    const int id = engine.submit(std::move(req));
    while (engine.busy()) engine.step();
    auto result = engine.take_result(id);
    ASSERT_TRUE(result);
    const auto& seq = result->sequences.at(0);
    ASSERT_EQ(seen.size(), seq.token_ids.size());
    for (size_t i = 0; i < seen.size(); ++i) {
      EXPECT_EQ(seen[i].first, seq.token_ids[i]);
      EXPECT_NEAR(seen[i].second.logprob, seq.logprobs.at(i), 1e-5);
      const auto& top = seen[i].second.top;
      ASSERT_EQ(static_cast<int>(top.size()), k);
      if (k == 0) continue;
      EXPECT_EQ(top[0].first, seq.token_ids[i]);  // greedy: the likeliest
      EXPECT_NEAR(top[0].second, seen[i].second.logprob, 1e-6);
      for (size_t j = 1; j < top.size(); ++j) EXPECT_GE(top[j - 1].second, top[j].second);
    }
  }
}

TEST(ServerLogprobs, EntriesFollowTheSentText) {
  LogprobTrack t;
  TokenLogprobs lp{-0.5f, {{7, -0.5f}, {8, -2.0f}}};
  t.add(7, lp, "ab");
  t.add(8, lp, "");  // a partial UTF-8 character: no text yet
  t.add(9, lp,
        "\xc3\xa9"
        "c");
  t.sent("a");
  auto first = t.take(false);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].offset, 0);
  t.sent("b");
  EXPECT_TRUE(t.take(false).empty());  // tokens 8 and 9 begin at character 2
  t.sent("\xc3\xa9");
  auto rest = t.take(false);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[1].offset, 2);
  t.add(2, lp, "");  // a final EOS: no text, taken at the end
  EXPECT_TRUE(t.take(false).empty());
  EXPECT_EQ(t.take(true).size(), 1u);

  std::vector<LogprobEntry> entries = {{5, {-1.0f, {{5, -1.0f}, {6, -INFINITY}}}, 0}};
  auto completions = logprobs_json(Endpoint::Completions, nullptr, entries);
  EXPECT_EQ(completions["tokens"][0], "token_id:5");
  EXPECT_EQ(completions["token_logprobs"][0], -1.0);
  EXPECT_EQ(completions["top_logprobs"][0]["token_id:6"], -9999.0);  // JSON has no -inf
  EXPECT_EQ(completions["text_offset"][0], 0);
  auto chat = logprobs_json(Endpoint::ChatCompletions, nullptr, entries);
  EXPECT_EQ(chat["content"][0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(chat["content"][0]["top_logprobs"][1]["logprob"], -9999.0);
  EXPECT_EQ(utf8_length("\xc3\xa9t\xc3\xa9"), 3);
}

TEST(ServerMetrics, PrometheusText) {
  Metrics m(8);
  m.count_request("/v1/completions", 200);
  m.count_request("/v1/completions", 200);
  m.count_request("/secret/path", 404);
  m.add_prompt_tokens(12);
  m.add_generated_token();
  m.observe_ttft(0.03);
  m.observe_inter_token(0.002);
  m.observe_inter_token(100);
  m.observe_step(3);
  m.set_state(2, 1, 3);
  const std::string text = m.render();
  auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
  EXPECT_TRUE(has(R"(mlxgp_requests_total{endpoint="/v1/completions",status="200"} 2)"));
  EXPECT_TRUE(has(R"(mlxgp_requests_total{endpoint="other",status="404"} 1)"));
  EXPECT_TRUE(has("mlxgp_prompt_tokens_total 12"));
  EXPECT_TRUE(has("mlxgp_generation_tokens_total 1"));
  EXPECT_TRUE(has("mlxgp_queue_depth 2"));
  EXPECT_TRUE(has("mlxgp_running_rows 3"));
  EXPECT_TRUE(has("mlxgp_batch_occupancy 0.375"));
  EXPECT_TRUE(has(R"(mlxgp_time_to_first_token_seconds_bucket{le="0.025"} 0)"));
  EXPECT_TRUE(has(R"(mlxgp_time_to_first_token_seconds_bucket{le="0.05"} 1)"));
  EXPECT_TRUE(has(R"(mlxgp_inter_token_latency_seconds_bucket{le="2.5"} 1)"));
  EXPECT_TRUE(has(R"(mlxgp_inter_token_latency_seconds_bucket{le="+Inf"} 2)"));
  EXPECT_TRUE(has("mlxgp_inter_token_latency_seconds_count 2"));
  EXPECT_TRUE(has(R"(mlxgp_batch_rows_bucket{le="4"} 1)"));
  EXPECT_TRUE(has("# TYPE mlxgp_inter_token_latency_seconds histogram"));
  EXPECT_EQ(text.find("secret"), std::string::npos);
}

}  // namespace
}  // namespace mlxgp::server
