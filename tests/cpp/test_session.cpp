// ChatSession on a tiny random llama with the default model's real tokenizer and chat template:
// each turn prefills only what the KV caches lack (common-prefix trimming), the reply equals a fresh
// generate() on the whole rendered conversation, reset() starts over, and context overflow is
// either a clear error that keeps the conversation or drops the oldest exchanges.
#include <gtest/gtest.h>

#include <filesystem>

#include <mlx/mlx.h>

#include "mlxgp/chat_session.h"
#include "mlxgp/error.h"
#include "mlxgp/generate.h"
#include "mlxgp/loader.h"
#include "test_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using mlxgp::testing::error_of;
namespace fs = std::filesystem;

namespace {

constexpr int kVocab = 49152;  // the default model's tokenizer

std::shared_ptr<Model> tiny_llama(int context) {
  ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = kVocab;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.rms_norm_eps = 1e-5f;
  c.max_position_embeddings = context;
  WeightMap w;
  int n = 0;
  auto rnd = [&](const mx::Shape& s) { return mx::random::normal(s, 0.0f, 0.5f, mx::random::key(++n)); };
  w.emplace("model.embed_tokens.weight", rnd({kVocab, 32}));
  w.emplace("lm_head.weight", rnd({kVocab, 32}));
  w.emplace("model.norm.weight", mx::ones({32}));
  for (int i = 0; i < 2; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    w.emplace(p + "input_layernorm.weight", mx::ones({32}));
    w.emplace(p + "post_attention_layernorm.weight", mx::ones({32}));
    w.emplace(p + "self_attn.q_proj.weight", rnd({32, 32}));
    w.emplace(p + "self_attn.k_proj.weight", rnd({16, 32}));
    w.emplace(p + "self_attn.v_proj.weight", rnd({16, 32}));
    w.emplace(p + "self_attn.o_proj.weight", rnd({32, 32}));
    w.emplace(p + "mlp.gate_proj.weight", rnd({64, 32}));
    w.emplace(p + "mlp.up_proj.weight", rnd({64, 32}));
    w.emplace(p + "mlp.down_proj.weight", rnd({32, 64}));
  }
  return std::shared_ptr<Model>(create_model(c, std::move(w)));
}

GenerationConfig greedy(int max_new) {
  GenerationConfig g;
  g.max_new_tokens = max_new;
  return g;
}

class ChatSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto gguf = fs::path(MLXGP_CACHE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!fs::exists(gguf)) GTEST_SKIP() << "default model not installed (scripts/setup.sh)";
    static std::shared_ptr<const Tokenizer> tok = load_tokenizer(gguf.string());
    tokenizer = tok;
  }
  // The ids send() will render for `user` after the current history.
  std::vector<int> next_prompt(const ChatSession& s, const std::string& user) {
    auto msgs = s.history();
    msgs.push_back({"user", user});
    return s.encode(msgs);
  }
  std::vector<int> fresh_reply(std::shared_ptr<Model> model, const std::vector<int>& ids, int max_new) {
    return generate(*model, tokenizer, ids, greedy(max_new)).sequences.at(0).token_ids;
  }
  std::shared_ptr<const Tokenizer> tokenizer;
};

}  // namespace

TEST(CommonPrefix, Lengths) {
  EXPECT_EQ(common_prefix_length({}, {1, 2}), 0u);
  EXPECT_EQ(common_prefix_length({1, 2, 3}, {1, 2, 3}), 3u);
  EXPECT_EQ(common_prefix_length({1, 2, 3}, {1, 2}), 2u);
  EXPECT_EQ(common_prefix_length({1, 2, 3}, {1, 5, 3}), 1u);
  EXPECT_EQ(common_prefix_length({4}, {1}), 0u);
}

TEST_F(ChatSessionTest, EachTurnPrefillsOnlyTheUncachedSuffixAndMatchesAFreshGeneration) {
  auto model = tiny_llama(2048);
  ChatSession s(model, tokenizer, greedy(8));
  const std::vector<std::string> turns = {"Hello!", "How are you today?", "Tell me a joke.", "Thanks"};
  for (size_t t = 0; t < turns.size(); ++t) {
    auto ids = next_prompt(s, turns[t]);
    auto cached = s.cached_ids();
    size_t lcp = common_prefix_length(cached, ids);
    ChatReply r = s.send(turns[t]);
    EXPECT_EQ(r.stats.prompt_tokens, static_cast<int>(ids.size()));
    EXPECT_EQ(r.stats.reused_tokens, static_cast<int>(lcp)) << "turn " << t;
    EXPECT_EQ(r.stats.prefilled_tokens, static_cast<int>(ids.size() - lcp));
    if (t > 0) {
      EXPECT_GT(r.stats.reused_tokens, 0);
    }
    EXPECT_EQ(r.token_ids, fresh_reply(model, ids, 8)) << "turn " << t;
    EXPECT_EQ(r.stats.generated_tokens, static_cast<int>(r.token_ids.size()));
    // The caches hold a prefix of prompt + reply.
    std::vector<int> all = ids;
    all.insert(all.end(), r.token_ids.begin(), r.token_ids.end());
    ASSERT_LE(s.cached_ids().size(), all.size());
    EXPECT_GE(s.cached_ids().size() + 1, all.size());
    EXPECT_TRUE(std::equal(s.cached_ids().begin(), s.cached_ids().end(), all.begin()));
    ASSERT_EQ(s.history().size(), 2 * (t + 1));
    EXPECT_EQ(s.history().back().role, "assistant");
    EXPECT_EQ(s.history().back().content, r.text);
  }
}

TEST_F(ChatSessionTest, AReplyThatReEncodesDifferentlyIsTrimmedFromTheCaches) {
  // A logit bias makes the model answer "a" six times; the next turn's rendering encodes "aaaaaa" with
  // merged tokens, so the caches must drop the reply's ids and prefill its re-encoding. The next turn
  // runs without the bias, so its reply shows whether the caches hold the right ids.
  auto model = tiny_llama(2048);
  const int a = tokenizer->token_to_id("a").value();
  ASSERT_NE(tokenizer->encode("aaaaaa", false), std::vector<int>(6, a));
  GenerationConfig config = greedy(6);
  config.logit_bias = LogitBias{{a, 1000.0}};
  ChatSession s(model, tokenizer, config);
  ChatReply r1 = s.send("Say a");
  ASSERT_EQ(r1.token_ids, std::vector<int>(6, a));
  const auto cached = s.cached_ids();
  const int first_prompt = r1.stats.prompt_tokens;
  ASSERT_GT(static_cast<int>(cached.size()), first_prompt);  // the caches hold some of the reply
  s.set_generation_config(greedy(6));
  auto ids = next_prompt(s, "again");
  ChatReply r2 = s.send("again");
  EXPECT_EQ(r2.stats.reused_tokens, static_cast<int>(common_prefix_length(cached, ids)));
  EXPECT_LT(r2.stats.reused_tokens, static_cast<int>(cached.size()));  // trimmed below what was cached
  EXPECT_GE(r2.stats.reused_tokens, first_prompt);                     // but the first prompt is kept
  EXPECT_EQ(r2.token_ids, fresh_reply(model, ids, 6));
}

TEST_F(ChatSessionTest, ResetStartsOverAndKeepsTheSystemPrompt) {
  auto model = tiny_llama(2048);
  ChatSession s(model, tokenizer, greedy(5), ChatSessionOptions{.system_prompt = "Be brief."});
  ASSERT_EQ(s.history().size(), 1u);
  EXPECT_EQ(s.history()[0].role, "system");
  ChatReply first = s.send("Hi");
  s.send("Again");
  s.reset();
  ASSERT_EQ(s.history().size(), 1u);
  EXPECT_TRUE(s.cached_ids().empty());
  ChatReply again = s.send("Hi");
  EXPECT_EQ(again.stats.reused_tokens, 0);
  EXPECT_EQ(again.stats.prefilled_tokens, again.stats.prompt_tokens);
  EXPECT_EQ(again.token_ids, first.token_ids);
}

TEST_F(ChatSessionTest, ContextOverflowIsAnErrorThatKeepsTheConversation) {
  auto model = tiny_llama(64);
  ChatSession s(model, tokenizer, greedy(4));
  ChatReply r1 = s.send("Hi");
  ASSERT_LT(r1.stats.prompt_tokens + 10, 64);
  auto before = s.history();
  auto cached = s.cached_ids();
  std::string long_text(200, 'a');
  for (int i = 0; i < 40; ++i) long_text += " word";
  std::string err = error_of([&] { s.send(long_text); });
  EXPECT_EQ(err.rfind("[chat] the conversation has ", 0), 0u) << err;
  EXPECT_NE(err.find("the model's context is 64"), std::string::npos) << err;
  ASSERT_EQ(s.history().size(), before.size());
  EXPECT_EQ(s.history().back().content, before.back().content);
  EXPECT_EQ(s.cached_ids(), cached);
  // The conversation goes on from where it was, still reusing the caches.
  auto ids = next_prompt(s, "ok");
  ChatReply r2 = s.send("ok");
  EXPECT_GT(r2.stats.reused_tokens, 0);
  EXPECT_EQ(r2.token_ids, fresh_reply(model, ids, 4));
}

TEST_F(ChatSessionTest, DropOldestTurnsKeepsTheSystemMessageAndTheNewestExchanges) {
  auto model = tiny_llama(96);
  ChatSession s(model, tokenizer, greedy(4),
                ChatSessionOptions{.system_prompt = "S", .on_overflow = ContextOverflow::DropOldestTurns});
  int dropped = 0;
  for (int t = 0; t < 8 && dropped == 0; ++t) {
    const std::string msg = "message number " + std::to_string(t);
    auto msgs = s.history();
    msgs.push_back({"user", msg});
    ChatReply r = s.send(msg);
    dropped = r.stats.dropped_turns;
    EXPECT_LT(r.stats.prompt_tokens, 96);
    if (dropped) {
      // What was sent is the conversation less its oldest exchanges, system message first.
      EXPECT_EQ(s.history()[0].role, "system");
      EXPECT_EQ(s.history()[1].content, msgs[1 + 2 * dropped].content);
      EXPECT_EQ(s.history()[s.history().size() - 2].content, msg);
      std::vector<ChatMessage> kept(s.history().begin(), s.history().end() - 1);
      EXPECT_EQ(r.stats.prompt_tokens, static_cast<int>(s.encode(kept).size()));
    }
  }
  EXPECT_GT(dropped, 0) << "the conversation never outgrew the context";
  // A single message longer than the context cannot be fitted by dropping anything.
  std::string huge;
  for (int i = 0; i < 150; ++i) huge += " word" + std::to_string(i);
  std::string err = error_of([&] { s.send(huge); });
  EXPECT_NE(err.find("even with only the last message"), std::string::npos) << err;
}

TEST_F(ChatSessionTest, InvalidUtf8MessageIsRejectedAndTheConversationKept) {
  auto model = tiny_llama(512);
  ChatSession s(model, tokenizer, greedy(3));
  s.send("Hi");
  for (std::string bad :
       {std::string("ok \xff"), std::string("\xc3"), std::string("ab\xed\xa0\x80"), std::string("\xc0\xaf")}) {
    std::string err = error_of([&] { s.send(bad); });
    EXPECT_EQ(err.rfind("[chat] the message is not valid UTF-8 (byte offset ", 0), 0u) << err;
  }
  EXPECT_EQ(s.history().size(), 2u);
  EXPECT_GT(s.send("h\xc3\xa9 \xf0\x9f\x8c\x8a").stats.reused_tokens, 0);  // valid: é and an emoji
}

TEST_F(ChatSessionTest, StopStringsEndAReplyAndOneSequenceIsRequired) {
  auto model = tiny_llama(512);
  const int a = tokenizer->token_to_id("a").value();
  GenerationConfig config = greedy(8);
  config.logit_bias = LogitBias{{a, 1000.0}};  // the reply is "aaaa..."
  config.stop_strings = std::vector<std::string>{"aaa"};
  ChatSession s(model, tokenizer, config);
  ChatReply r = s.send("Say a");
  EXPECT_EQ(r.finish_reason, FinishReason::StopString);
  EXPECT_EQ(r.text, "aaa");  // the stop string is kept, as in transformers
  GenerationConfig several = greedy(4);
  several.do_sample = true;
  several.num_return_sequences = 2;
  EXPECT_EQ(error_of([&] { s.set_generation_config(several); }), "[chat] num_return_sequences must be 1 in a chat");
}

TEST(ChatSessionErrors, NeedsATokenizerWithAChatTemplate) {
  auto model = tiny_llama(128);
  EXPECT_EQ(error_of([&] { ChatSession(model, nullptr, greedy(4)); }),
            "[chat] the model has no tokenizer; a chat needs one");
  GenerationConfig bad = greedy(4);
  bad.top_p = 2.0;
  auto gguf = fs::path(MLXGP_CACHE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(gguf)) GTEST_SKIP();
  EXPECT_EQ(error_of([&] { ChatSession(model, load_tokenizer(gguf.string()), bad); }).rfind("[config] ", 0), 0u);
}
