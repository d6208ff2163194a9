// The server side of tool calls without HTTP: a request's tools / tool_choice (src/server/chat_tools.h),
// the template's view of assistant tool calls (chat_prompt.h) and a reply read back whole or streamed
// (chat_reply.h), which must agree.
#include <gtest/gtest.h>

#include "mlxgp/server.h"
#include "server/chat_prompt.h"
#include "server/chat_reply.h"
#include "server/chat_tools.h"

using namespace mlxgp;
using namespace mlxgp::server;
using ojson = nlohmann::ordered_json;

namespace {

const ojson kTools = ojson::parse(R"([{"type": "function", "function": {"name": "get_weather",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])");

std::string param_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400);
    return e.param();
  }
  ADD_FAILURE() << "no ApiError";
  return "";
}

// The streamed deltas put back into a message.
ojson streamed_message(const ChatReplyRules& rules, const std::string& text) {
  ChatReply reply(rules);
  std::string content, reasoning;
  ojson calls = ojson::array();
  auto take = [&](const std::vector<ojson>& deltas) {
    for (auto& d : deltas) {
      if (d.contains("content")) content += d["content"].get<std::string>();
      if (d.contains("reasoning_content")) reasoning += d["reasoning_content"].get<std::string>();
      if (d.contains("tool_calls"))
        for (auto& c : d["tool_calls"]) {
          const size_t i = c["index"].get<size_t>();
          if (i == calls.size()) calls.push_back({{"id", c["id"]}, {"name", c["function"]["name"]}, {"arguments", ""}});
          calls[i]["arguments"] =
              calls[i]["arguments"].get<std::string>() + c["function"]["arguments"].get<std::string>();
        }
    }
  };
  for (char ch : text) take(reply.push(std::string(1, ch)));
  take(reply.finish());
  return {{"content", content}, {"reasoning", reasoning}, {"calls", calls}, {"auto_called", reply.auto_called()}};
}

}  // namespace

TEST(ServerTools, ChoicesAndRules) {
  auto body = [](const std::string& extra) { return ojson::parse(R"({"tools": )" + kTools.dump() + extra + "}"); };
  ChatTools t = parse_chat_tools(body(""), ToolCallFormat::Hermes);  // "auto" by default
  ASSERT_TRUE(t.rules.has_value());
  EXPECT_EQ(t.rules->kind, ToolCallRules::Kind::Format);
  EXPECT_EQ(t.rules->format, ToolCallFormat::Hermes);
  EXPECT_FALSE(t.schema.has_value());
  EXPECT_EQ(t.tools, kTools);
  t = parse_chat_tools(body(R"(, "tool_choice": "none")"), ToolCallFormat::None);
  EXPECT_FALSE(t.rules.has_value());
  EXPECT_EQ(t.tools, kTools);  // still rendered
  t = parse_chat_tools(body(R"(, "tool_choice": {"type": "function", "function": {"name": "get_weather"}})"),
                       ToolCallFormat::None);
  EXPECT_EQ(t.rules->kind, ToolCallRules::Kind::Named);
  EXPECT_EQ(*t.schema, kTools[0]["function"]["parameters"].dump());
  t = parse_chat_tools(body(R"(, "tool_choice": "required", "parallel_tool_calls": false)"), ToolCallFormat::None);
  EXPECT_EQ(t.rules->kind, ToolCallRules::Kind::Array);
  EXPECT_EQ(t.rules->max_calls, 1);
  EXPECT_EQ(ojson::parse(*t.schema)["maxItems"], 1);
  // Constrained choices read no <think> block: the schema holds the whole reply.
  EXPECT_FALSE(chat_reply_rules(t, "<think>\n", true).reasoning);
  GenerationConfig c;
  c.regex = "a";
  EXPECT_EQ(param_of([&] { apply_tool_schema(c, t); }), "tool_choice");

  EXPECT_EQ(param_of([&] { parse_chat_tools(body(""), ToolCallFormat::None); }), "tools");
  EXPECT_EQ(param_of([&] { parse_chat_tools(body(R"(, "tool_choice": "auto")"), ToolCallFormat::None); }),
            "tool_choice");
  EXPECT_EQ(param_of([&] { parse_chat_tools(ojson::parse(R"({"tool_choice": "required"})"), ToolCallFormat::Hermes); }),
            "tool_choice");
  EXPECT_EQ(param_of([&] { parse_chat_tools(ojson::parse(R"({"functions": []})"), ToolCallFormat::Hermes); }),
            "functions");
}

TEST(ServerTools, TemplateSeesArgumentsAsObjects) {
  ojson m = template_messages(ojson::parse(R"([{"role": "user", "content": "x"},
    {"role": "assistant", "content": null, "tool_calls": [
      {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"k\": [1.5, null]}"}},
      {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}},
      {"id": "c", "type": "function", "function": {"name": "h", "arguments": {"already": "an object"}}}]},
    {"role": "tool", "tool_call_id": "a", "content": "1"}])"));
  EXPECT_EQ(m[1]["content"], "");
  EXPECT_EQ(m[1]["tool_calls"][0]["function"]["arguments"], ojson::parse(R"({"k": [1.5, null]})"));
  EXPECT_EQ(m[1]["tool_calls"][1]["function"]["arguments"], ojson::object());
  EXPECT_EQ(m[1]["tool_calls"][2]["function"]["arguments"]["already"], "an object");
  EXPECT_EQ(m[1]["tool_calls"][0]["id"], "a");
  EXPECT_EQ(m[2]["tool_call_id"], "a");
}

TEST(ServerTools, ReplyWholeEqualsStreamed) {
  ChatReplyRules rules;
  rules.reasoning = true;
  ToolCallRules tools;
  tools.format = ToolCallFormat::Hermes;
  rules.tools = tools;
  const std::string text =
      "<think>Check the tool.</think>Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\"}}\n</tool_call>";
  ChatReply whole(rules);
  const ojson m = whole.message(text);
  EXPECT_EQ(m["role"], "assistant");
  EXPECT_EQ(m["content"], "Sure.\n");
  EXPECT_EQ(m["reasoning_content"], "Check the tool.");
  ASSERT_EQ(m["tool_calls"].size(), 1u);
  EXPECT_EQ(m["tool_calls"][0]["type"], "function");
  EXPECT_EQ(m["tool_calls"][0]["function"]["arguments"], "{\"city\": \"Paris\"}");
  EXPECT_TRUE(whole.auto_called());
  const ojson s = streamed_message(rules, text);
  EXPECT_EQ(s["content"], m["content"]);
  EXPECT_EQ(s["reasoning"], m["reasoning_content"]);
  ASSERT_EQ(s["calls"].size(), 1u);
  EXPECT_EQ(s["calls"][0]["name"], "get_weather");
  EXPECT_EQ(s["calls"][0]["arguments"], m["tool_calls"][0]["function"]["arguments"]);
  EXPECT_TRUE(s["auto_called"].get<bool>());
  EXPECT_EQ(s["calls"][0]["id"].get<std::string>().substr(0, 5), "call_");

  // Without calls or reasoning the content stays a string, empty or not (as before tools existed).
  ChatReply plain(rules);
  EXPECT_EQ(plain.message(""), ojson::parse(R"({"role": "assistant", "content": ""})"));
  EXPECT_FALSE(plain.auto_called());
  // A named choice keeps "stop": only the model's own calls are "tool_calls".
  ChatReplyRules named;
  named.tools = ToolCallRules{ToolCallRules::Kind::Named, ToolCallFormat::None, "get_weather", 0};
  ChatReply n(named);
  EXPECT_EQ(n.message("{\"city\": \"Paris\"}")["content"], nullptr);
  EXPECT_FALSE(n.auto_called());
}
