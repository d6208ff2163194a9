"""Tool calls and reasoning on `mlxgp serve` through the pinned `openai` client: `tools` rendered by the chat
template as transformers renders them, replies read for Hermes `<tool_call>` blocks (and Llama 3 JSON under
--tool-parser llama3) into `tool_calls`, streamed as `delta.tool_calls`, tool_choice "none" / "required" /
named (constrained to the tool's schema), parallel_tool_calls, `<think>` blocks as `reasoning_content`, and
400s naming the field.

SmolLM2 does not call tools by itself, so the server runs a Hermes-style template (tests/data/server/) and
each reply is forced with a `regex` field. The expected parse is vLLM's hermes parser (`vllm_hermes` below,
its non-streaming rule), and the streamed deltas must put together the same message."""
import json
import re
import subprocess

import jsonschema
import openai
import pytest

from test_server import BIN, GGUF, ROOT, Server, post

TEMPLATE = ROOT / "tests" / "data" / "server" / "hermes_tools.jinja"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city — °C or °F",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "London"]},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
                                       "required": ["zone"], "additionalProperties": False}}}
TOOLS = [WEATHER, CLOCK]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>'
CALL2 = '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>'


def forced(text):
    """A request field that makes the reply exactly `text`."""
    return {"regex": re.escape(text)}


def vllm_hermes(text):
    """vLLM's Hermes2ProToolParser.extract_tool_calls (non-streaming): (content, [(name, arguments)]) or None
    when the reply is no call (every block must parse, else it all stays text)."""
    if "<tool_call>" not in text:
        return None
    try:
        calls = [json.loads(a or b) for a, b in re.findall(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)", text, re.S)]
        calls = [(c["name"], json.dumps(c["arguments"], ensure_ascii=False)) for c in calls]
    except Exception:
        return None
    return text[:text.find("<tool_call>")] or None, calls


def collect(stream):
    """A streamed reply put together: content, reasoning_content, tool calls by index, finish_reason."""
    content, reasoning, calls, finish = "", "", {}, None
    for chunk in stream:
        for c in chunk.choices:
            d = c.delta
            content += d.content or ""
            reasoning += getattr(d, "reasoning_content", None) or ""
            for tc in d.tool_calls or []:
                e = calls.setdefault(tc.index, {"id": None, "type": None, "name": "", "arguments": ""})
                if tc.id:
                    assert e["id"] is None, "a call's id comes once"
                    e["id"], e["type"] = tc.id, tc.type
                e["name"] += (tc.function.name or "") if tc.function else ""
                e["arguments"] += (tc.function.arguments or "") if tc.function else ""
            finish = c.finish_reason or finish
    return content, reasoning, [calls[i] for i in sorted(calls)], finish


@pytest.fixture(scope="module")
def server():
    s = Server("--chat-template", TEMPLATE)
    yield s
    assert s.stop() == 0, "".join(s.log)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url("/v1"), api_key="unused", max_retries=0, timeout=300)


def chat(client, server, reply, stream=False, tools=TOOLS, **kw):
    if tools is not None:
        kw["tools"] = tools
    return client.chat.completions.create(model=server.model, messages=kw.pop("messages", ASK), max_tokens=80,
                                          temperature=0, stream=stream, extra_body=forced(reply), **kw)


def test_tool_prompt_renders_like_transformers(server, client):
    """The template sees `tools` as given and each call's `arguments` JSON string as an object (what vLLM
    passes), so the prompt is transformers' rendering of the same conversation."""
    from transformers.utils.chat_template_utils import render_jinja_template

    args = {"city": "Paris", "unit": "celsius", "extra": [1.5, None, True, "é"]}
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(args)}}
    msgs = [{"role": "system", "content": "Be brief."}, *ASK, {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'}]
    reference = [dict(m) for m in msgs]
    reference[2] = {**msgs[2], "tool_calls": [{**call, "function": {**call["function"], "arguments": args}}]}
    rendered, _ = render_jinja_template(conversations=[reference], tools=TOOLS, chat_template=TEMPLATE.read_text(),
                                        add_generation_prompt=True)
    assert '{"city": "Paris", "unit": "celsius", "extra": [1.5, null, true, "é"]}' in rendered[0]
    status, plain = post(server, "/tokenize", {"prompt": rendered[0], "add_special_tokens": False}, key=None)
    assert status == 200
    status, ours = post(server, "/tokenize", {"messages": msgs, "tools": TOOLS}, key=None)
    assert status == 200 and ours["tokens"] == plain["tokens"]
    # The chat request renders the same prompt (its usage counts it).
    r = chat(client, server, "Sunny.", messages=msgs)
    assert r.usage.prompt_tokens == ours["count"]


@pytest.mark.parametrize("reply", [CALL, "Let me check.\n" + CALL, CALL + "\n" + CALL2])
def test_auto_tool_calls(server, client, reply):
    content, calls = vllm_hermes(reply)
    r = chat(client, server, reply)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    assert c.message.content == content
    assert [(t.function.name, t.function.arguments) for t in c.message.tool_calls] == calls
    assert all(re.fullmatch(r"call_[A-Za-z0-9]{24}", t.id) and t.type == "function" for t in c.message.tool_calls)
    assert len({t.id for t in c.message.tool_calls}) == len(calls)
    # Streamed: text deltas until the call, then delta.tool_calls; together the same message.
    s_content, s_reasoning, s_calls, finish = collect(chat(client, server, reply, stream=True))
    assert (s_content or None, s_reasoning, finish) == (content, "", "tool_calls")
    assert [(t["name"], t["arguments"]) for t in s_calls] == calls
    assert all(t["type"] == "function" and t["id"].startswith("call_") for t in s_calls)


def test_parallel_tool_calls_false_keeps_one_call(server, client):
    r = chat(client, server, CALL + "\n" + CALL2, parallel_tool_calls=False)
    assert [t.function.name for t in r.choices[0].message.tool_calls] == ["get_weather"]
    _, _, calls, finish = collect(chat(client, server, CALL + "\n" + CALL2, stream=True, parallel_tool_calls=False))
    assert [t["name"] for t in calls] == ["get_weather"] and finish == "tool_calls"


@pytest.mark.parametrize("reply", [
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": oops}}\n</tool_call>',  # not JSON
    '<tool_call>\n{"arguments": {}}\n</tool_call>',  # no name
    'I would call <tool_call',  # a tag never finished
])
def test_malformed_calls_stay_text(server, client, reply):
    assert vllm_hermes(reply) is None
    r = chat(client, server, reply)
    assert (r.choices[0].message.content, r.choices[0].message.tool_calls, r.choices[0].finish_reason) == (
        reply, None, "stop")
    assert collect(chat(client, server, reply, stream=True)) == (reply, "", [], "stop")


def test_tool_choice_none_renders_tools_and_reads_no_calls(server, client):
    r = chat(client, server, CALL, tool_choice="none")
    assert (r.choices[0].message.content, r.choices[0].message.tool_calls) == (CALL, None)
    _, with_tools = post(server, "/tokenize", {"messages": ASK, "tools": TOOLS}, key=None)
    assert r.usage.prompt_tokens == with_tools["count"]  # vLLM renders the tools for "none" too
    assert collect(chat(client, server, CALL, stream=True, tool_choice="none")) == (CALL, "", [], "stop")


def constrained(client, server, stream=False, **kw):
    return client.chat.completions.create(model=server.model, messages=ASK, tools=TOOLS, max_tokens=80,
                                          temperature=0, stream=stream, **kw)


def test_named_tool_choice_is_held_to_the_schema(server, client):
    choice = {"type": "function", "function": {"name": "get_time"}}
    r = constrained(client, server, tool_choice=choice)
    c = r.choices[0]
    assert c.finish_reason == "stop"  # OpenAI and vLLM: "tool_calls" only when the model chose to call
    assert c.message.content is None and len(c.message.tool_calls) == 1
    call = c.message.tool_calls[0]
    assert call.function.name == "get_time"
    jsonschema.validate(json.loads(call.function.arguments), CLOCK["function"]["parameters"])
    content, _, calls, finish = collect(constrained(client, server, stream=True, tool_choice=choice))
    assert (content, finish) == ("", "stop")
    assert [(t["name"], t["arguments"]) for t in calls] == [("get_time", call.function.arguments)]


def test_required_tool_choice_is_held_to_the_schemas(server, client):
    r = constrained(client, server, tool_choice="required", parallel_tool_calls=False)
    calls = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "stop" and len(calls) == 1
    params = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    jsonschema.validate(json.loads(calls[0].function.arguments), params[calls[0].function.name])
    _, _, s_calls, _ = collect(constrained(client, server, stream=True, tool_choice="required",
                                           parallel_tool_calls=False))
    assert [(t["name"], t["arguments"]) for t in s_calls] == [(calls[0].function.name, calls[0].function.arguments)]


@pytest.mark.parametrize("messages,reply,reasoning,content", [
    (ASK, "<think>Paris is in France.</think>It is sunny.", "Paris is in France.", "It is sunny."),
    # The template opened <think> in the prompt: the reply starts inside it.
    ([{"role": "user", "content": "Weather in Paris? /think"}], "Look it up.</think>Sunny.", "Look it up.", "Sunny."),
    (ASK, "<think>Cut short", "Cut short", None),
])
def test_reasoning_content(server, client, messages, reply, reasoning, content):
    r = chat(client, server, reply, messages=messages, tools=None)
    m = r.choices[0].message
    assert (m.reasoning_content, m.content, r.choices[0].finish_reason) == (reasoning, content, "stop")
    assert collect(chat(client, server, reply, stream=True, messages=messages, tools=None)) == (
        content or "", reasoning, [], "stop")


def test_reasoning_then_tool_call(server, client):
    reply = "<think>I need the weather tool.</think>\n" + CALL
    m = chat(client, server, reply).choices[0].message
    assert m.reasoning_content == "I need the weather tool."
    assert m.content == "\n" and m.tool_calls[0].function.name == "get_weather"


def test_llama3_parser_and_reasoning_format_none():
    s = Server("--chat-template", TEMPLATE, "--tool-parser", "llama3", "--reasoning-format", "none")
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="unused", max_retries=0, timeout=300)
        reply = '<|python_tag|>{"name": "get_time", "parameters": {"zone": "UTC"}}'
        r = chat(c, s, reply)
        assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
        assert [(t.function.name, t.function.arguments) for t in r.choices[0].message.tool_calls] == [
            ("get_time", '{"zone": "UTC"}')]
        _, _, calls, finish = collect(chat(c, s, reply, stream=True))
        assert [(t["name"], t["arguments"]) for t in calls] == [("get_time", '{"zone": "UTC"}')]
        # Hermes blocks are text to the llama3 parser, and <think> stays in the content.
        r = chat(c, s, "<think>hm</think>" + CALL)
        m = r.choices[0].message
        assert (m.content, m.tool_calls, getattr(m, "reasoning_content", None)) == ("<think>hm</think>" + CALL, None, None)
    finally:
        assert s.stop() == 0, "".join(s.log)
    for flag, value in (("--tool-parser", "mistral"), ("--reasoning-format", "deepseek")):
        p = subprocess.run([str(BIN), "serve", "--model", str(GGUF), "--port", "0", flag, value],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode != 0 and flag in p.stderr, p.stderr


@pytest.mark.parametrize("body,param", [
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}, "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "colour": 1}}]}, "tools[0].function.colour"),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_news"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ({"tools": TOOLS, "tool_choice": "required", "regex": "a"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "strict": True}}]}, "tools[0].function.strict"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"not": {"required": ["a"]}}}}],
      "tool_choice": "required"}, "tools"),  # a schema that structured output cannot enforce
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"messages": [*ASK, {"role": "assistant", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
])
def test_tool_errors_name_the_field(server, body, param):
    status, r = post(server, "/v1/chat/completions", {"messages": ASK, **body}, key=None)
    assert status == 400 and r["error"]["param"] == param, r


def test_tool_fields_elsewhere_are_refused(server):
    status, r = post(server, "/v1/completions", {"prompt": "Hi", "tools": TOOLS}, key=None)
    assert status == 400 and r["error"]["param"] == "tools"
    status, r = post(server, "/tokenize", {"prompt": "Hi", "tools": TOOLS}, key=None)
    assert status == 400 and r["error"]["param"] == "tools"
