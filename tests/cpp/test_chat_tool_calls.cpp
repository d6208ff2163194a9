// Unit tests for tool-call and <think> parsing of chat replies (include/mlxgp/tool_calls.h, reasoning.h).
// Expected results follow vLLM's hermes / llama3_json tool parsers and its reasoning parsers; every case
// is also streamed in random pieces, which must give the same content, reasoning and calls.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "mlxgp/error.h"
#include "mlxgp/reasoning.h"
#include "mlxgp/tool_calls.h"

using namespace mlxgp;
using ojson = nlohmann::ordered_json;

namespace {

ToolCallRules format(ToolCallFormat f, int max_calls = 0) {
  ToolCallRules r;
  r.format = f;
  r.max_calls = max_calls;
  return r;
}

// The reply streamed in random pieces (one byte at a time when `seed` is 0), put back together.
ParsedToolCalls streamed(const ToolCallRules& rules, const std::string& text, unsigned seed) {
  ToolCallParser parser(rules);
  ParsedToolCalls r;
  auto take = [&](const std::vector<ToolCallEvent>& events) {
    for (auto& e : events) {
      if (!e.is_call) {
        r.content += e.text;
        continue;
      }
      if (e.index == static_cast<int>(r.calls.size())) {
        EXPECT_FALSE(e.name.empty()) << "a call's first piece names it";
        r.calls.push_back({e.name, e.arguments});
      } else {
        ASSERT_LT(e.index, static_cast<int>(r.calls.size()));
        EXPECT_TRUE(e.name.empty());
        r.calls[e.index].arguments += e.arguments;
      }
    }
  };
  std::mt19937 rng(seed);
  for (size_t i = 0; i < text.size();) {
    const size_t n = seed == 0 ? 1 : 1 + rng() % 7;
    take(parser.push(text.substr(i, n)));
    i += n;
  }
  take(parser.finish());
  return r;
}

// parse_tool_calls, checked against the same reply streamed in pieces.
ParsedToolCalls parse(const ToolCallRules& rules, const std::string& text) {
  ParsedToolCalls whole = parse_tool_calls(rules, text);
  for (unsigned seed : {0u, 1u, 2u, 3u}) {
    ParsedToolCalls s = streamed(rules, text, seed);
    EXPECT_EQ(s.content, whole.content) << "seed " << seed << ": " << text;
    EXPECT_EQ(s.calls.size(), whole.calls.size()) << "seed " << seed << ": " << text;
    for (size_t i = 0; i < std::min(s.calls.size(), whole.calls.size()); ++i) {
      EXPECT_EQ(s.calls[i].name, whole.calls[i].name);
      EXPECT_EQ(s.calls[i].arguments, whole.calls[i].arguments);
    }
  }
  return whole;
}

}  // namespace

TEST(ToolCalls, FormatNamesAndTemplateRule) {
  EXPECT_EQ(parse_tool_call_format("hermes"), ToolCallFormat::Hermes);
  EXPECT_EQ(parse_tool_call_format("llama3"), ToolCallFormat::Llama3);
  EXPECT_EQ(parse_tool_call_format("none"), ToolCallFormat::None);
  try {
    parse_tool_call_format("mistral");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "[tool_calls] unknown tool-call format 'mistral' (hermes, llama3 or none)");
  }
  EXPECT_STREQ(tool_call_format_name(ToolCallFormat::Llama3), "llama3");
  EXPECT_EQ(tool_call_format_for_template("{% for tool in tools %}{{ tool | tojson }}{% endfor %}<tool_call>"),
            ToolCallFormat::Hermes);
  EXPECT_EQ(tool_call_format_for_template("<|start_header_id|>{{ m.role }}<|end_header_id|><|python_tag|>"),
            ToolCallFormat::Llama3);
  EXPECT_EQ(tool_call_format_for_template(
                "<|start_header_id|>{{- '{\"name\": function name, \"parameters\": dictionary}' }}"),
            ToolCallFormat::Llama3);
  // A Llama 3 template without tools, and ChatML without <tool_call>: nothing to parse.
  EXPECT_EQ(tool_call_format_for_template("<|start_header_id|>{{ m.role }}<|end_header_id|>"), ToolCallFormat::None);
  EXPECT_EQ(tool_call_format_for_template("<|im_start|>{{ m.role }}"), ToolCallFormat::None);
}

TEST(ToolCalls, HermesOneCall) {
  auto r = parse(format(ToolCallFormat::Hermes),
                 "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>");
  EXPECT_EQ(r.content, "");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(r.calls[0].arguments, "{\"city\": \"Paris\"}");
}

TEST(ToolCalls, HermesTextAndSeveralCalls) {
  // Text before the first call is kept as it is (vLLM); the whitespace between and after calls is not content.
  const std::string text =
      "Let me check.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": [1, 2.5, null, true], \"s\": \"é\\n\"}}"
      "\n</tool_call>\n<tool_call>{\"arguments\":{},\"name\":\"b\"}</tool_call>\n  \n";
  auto r = parse(format(ToolCallFormat::Hermes), text);
  EXPECT_EQ(r.content, "Let me check.\n");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].name, "a");
  // Python's json.dumps(ensure_ascii=False): ", " and ": ", floats as repr, non-ASCII kept.
  EXPECT_EQ(r.calls[0].arguments, "{\"x\": [1, 2.5, null, true], \"s\": \"é\\n\"}");
  EXPECT_EQ(r.calls[1].name, "b");
  EXPECT_EQ(r.calls[1].arguments, "{}");
}

TEST(ToolCalls, HermesTextAfterACallIsKept) {
  auto r = parse(format(ToolCallFormat::Hermes),
                 "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n\nDone, see above.");
  EXPECT_EQ(r.content, "\n\nDone, see above.");
  ASSERT_EQ(r.calls.size(), 1u);
}

TEST(ToolCalls, HermesUnclosedLastCallRunsToTheEnd) {
  auto r = parse(format(ToolCallFormat::Hermes), "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"k\": 1}}\n");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].arguments, "{\"k\": 1}");
  EXPECT_EQ(r.content, "");
}

TEST(ToolCalls, HermesMalformedCallsStayText) {
  for (const std::string text : {
           "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"k\": }\n</tool_call>",  // bad JSON
           "<tool_call>{\"arguments\": {}}</tool_call>",                             // no name
           "<tool_call>{\"name\": \"a\"}</tool_call>",                               // no arguments
           "<tool_call>[1, 2]</tool_call> and more",                                 // not an object
           "<tool_call>{\"name\": \"a\", \"arguments\": {}",                         // unclosed and cut
           "no calls here < tool_call > <tool_call",                                 // a beginning of the tag
       }) {
    auto r = parse(format(ToolCallFormat::Hermes), text);
    EXPECT_EQ(r.content, text);
    EXPECT_TRUE(r.calls.empty()) << text;
  }
  // A malformed block between good ones stays text; the good ones are calls.
  auto r = parse(format(ToolCallFormat::Hermes),
                 "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n<tool_call>oops</tool_call>\n"
                 "<tool_call>{\"name\": \"b\", \"arguments\": {}}</tool_call>");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[1].name, "b");
  EXPECT_EQ(r.content, "\n<tool_call>oops</tool_call>\n");
}

TEST(ToolCalls, MaxCallsDropsLaterCalls) {
  const std::string text =
      "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>\n<tool_call>{\"name\": \"b\", \"arguments\": "
      "{}}</tool_call>\n";
  auto r = parse(format(ToolCallFormat::Hermes, 1), text);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "a");
  EXPECT_EQ(r.content, "");
}

TEST(ToolCalls, FormatNoneIsText) {
  const std::string text = "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>";
  auto r = parse(format(ToolCallFormat::None), text);
  EXPECT_EQ(r.content, text);
  EXPECT_TRUE(r.calls.empty());
}

TEST(ToolCalls, Llama3Json) {
  auto r = parse(format(ToolCallFormat::Llama3), "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}");
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(r.calls[0].arguments, "{\"city\": \"Paris\"}");
  EXPECT_EQ(r.content, "");
  // After <|python_tag|>, "arguments" instead of "parameters", several calls separated by ';', braces in strings.
  r = parse(format(ToolCallFormat::Llama3),
            " <|python_tag|>{\"name\": \"a\", \"arguments\": {\"q\": \"}{;\"}}; {\"name\": \"b\", \"parameters\": {}}");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].arguments, "{\"q\": \"}{;\"}");
  EXPECT_EQ(r.calls[1].name, "b");
  EXPECT_EQ(r.content, "");
}

TEST(ToolCalls, Llama3NotCallsStayText) {
  for (const std::string text : {
           "The answer is {\"name\": \"a\", \"parameters\": {}}",       // calls only at the start
           "{\"name\": \"a\", \"parameters\": {}, \"arguments\": {}}",  // both (vLLM refuses)
           "{\"name\": \"a\"}",                                         // no parameters
           "{\"name\": \"a\", \"parameters\": {}}; {\"oops\": 1}",      // one bad call: all text
           "{\"name\": \"a\", \"parameters\": {",                       // cut
           "<|python_tag|>print(1)",                                    // code, not JSON
           "   ",
       }) {
    auto r = parse(format(ToolCallFormat::Llama3), text);
    EXPECT_EQ(r.content, text);
    EXPECT_TRUE(r.calls.empty()) << text;
  }
}

TEST(ToolCalls, RequiredArrayAndSchema) {
  ToolCallRules rules;
  rules.kind = ToolCallRules::Kind::Array;
  auto r = parse(rules, "[{\"name\": \"a\", \"parameters\": {\"x\": 1}}, {\"name\": \"b\", \"parameters\": {}}]");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].arguments, "{\"x\": 1}");
  EXPECT_EQ(r.calls[1].name, "b");
  EXPECT_EQ(r.content, "");
  r = parse(rules, "[{\"name\": \"a\", \"param");  // cut by max_tokens: text
  EXPECT_EQ(r.content, "[{\"name\": \"a\", \"param");
  EXPECT_TRUE(r.calls.empty());

  const ojson tools = ojson::parse(R"([
    {"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {"p": {"$ref": "#/$defs/P"}},
                                       "$defs": {"P": {"type": "integer"}}}}},
    {"type": "function", "function": {"name": "b"}}])");
  rules.max_calls = 1;
  EXPECT_EQ(ojson::parse(tool_calls_schema(tools, rules)), ojson::parse(R"({
    "type": "array", "minItems": 1, "maxItems": 1,
    "items": {"type": "object", "anyOf": [
      {"properties": {"name": {"type": "string", "enum": ["a"]},
                      "parameters": {"type": "object", "properties": {"p": {"$ref": "#/$defs/P"}}}},
       "required": ["name", "parameters"]},
      {"properties": {"name": {"type": "string", "enum": ["b"]}, "parameters": {"type": "object", "properties": {}}},
       "required": ["name", "parameters"]}]},
    "$defs": {"P": {"type": "integer"}}})"));
  ToolCallRules named;
  named.kind = ToolCallRules::Kind::Named;
  named.name = "b";
  EXPECT_EQ(tool_calls_schema(tools, named), R"({"type":"object","properties":{}})");
  named.name = "zzz";
  EXPECT_THROW(tool_calls_schema(tools, named), Error);
}

TEST(ToolCalls, NamedStreamsArguments) {
  ToolCallRules rules;
  rules.kind = ToolCallRules::Kind::Named;
  rules.name = "get_weather";
  ToolCallParser p(rules);
  auto e = p.push("{\"ci");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].name, "get_weather");
  EXPECT_EQ(e[0].arguments, "{\"ci");
  e = p.push("ty\": \"Paris\"}");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_TRUE(e[0].name.empty());
  EXPECT_EQ(e[0].arguments, "ty\": \"Paris\"}");
  EXPECT_TRUE(p.finish().empty());
  auto r = parse(rules, "{\"city\": \"Paris\"}");  // the constrained text as it is (vLLM)
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].arguments, "{\"city\": \"Paris\"}");
}

TEST(ToolCalls, HeldBackUntilDecided) {
  ToolCallParser p(format(ToolCallFormat::Hermes));
  auto e = p.push("Sure <tool");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].text, "Sure ");  // "<tool" may begin a call
  EXPECT_TRUE(p.push("_call>{\"name\": \"a\", ").empty());
  e = p.push("\"arguments\": {}}</tool_call>");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_TRUE(e[0].is_call);
  EXPECT_EQ(p.calls(), 1);
}

namespace {

void expect_split(const std::string& text, bool opened, const std::string& reasoning, const std::string& content,
                  bool has_reasoning) {
  SplitReasoning whole = split_reasoning(text, opened);
  EXPECT_EQ(whole.reasoning, reasoning) << text;
  EXPECT_EQ(whole.content, content) << text;
  EXPECT_EQ(whole.has_reasoning, has_reasoning) << text;
  for (size_t cut = 0; cut <= text.size(); ++cut) {  // two pieces at every point, and byte by byte
    for (int bytewise = 0; bytewise < 2; ++bytewise) {
      ReasoningParser p(opened);
      std::string r, c;
      auto take = [&](const std::vector<ReasoningEvent>& ev) {
        for (auto& e : ev) (e.reasoning ? r : c) += e.text;
      };
      if (bytewise) {
        for (char ch : text) take(p.push(std::string(1, ch)));
      } else {
        take(p.push(text.substr(0, cut)));
        take(p.push(text.substr(cut)));
      }
      take(p.finish());
      EXPECT_EQ(r, reasoning) << text << " cut " << cut;
      EXPECT_EQ(c, content) << text << " cut " << cut;
    }
  }
}

}  // namespace

TEST(Reasoning, ThinkBlocks) {
  expect_split("<think>\nLet me add.\n</think>\n\n4", false, "\nLet me add.\n", "\n\n4", true);
  expect_split("\n <think>a</think>b", false, "a", "b", true);
  expect_split("no thinking <think>x</think>", false, "", "no thinking <think>x</think>", false);
  expect_split("<thin", false, "", "<thin", false);
  expect_split("  ", false, "", "  ", false);
  expect_split("<think>cut by max_tokens", false, "cut by max_tokens", "", true);
  // The template opened the block: the reply starts inside it.
  expect_split("Let me see.</think>The answer.", true, "Let me see.", "The answer.", true);
  expect_split("still thinking", true, "still thinking", "", true);
  expect_split("a</think>b</think>c", true, "a", "b</think>c", true);
}

TEST(Reasoning, PromptOpensThink) {
  EXPECT_TRUE(prompt_opens_think("<|im_start|>assistant\n<think>\n"));
  EXPECT_TRUE(prompt_opens_think("<｜Assistant｜><think>"));
  EXPECT_FALSE(prompt_opens_think("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
  EXPECT_FALSE(prompt_opens_think("<|im_start|>assistant\n"));
  EXPECT_FALSE(prompt_opens_think(""));
}
