"""`mlxgp serve` refusing what it cannot honour, each with a 400 naming the field, while the requests
already running go on untouched: settings that would only fail inside a shared decode step (token ids
outside the vocabulary, cache options, a beam search wider than the batch), bodies that are not UTF-8,
unknown keys in content parts, missing message content, contradictory sampling fields, a length the
context cannot hold, tiny temperatures; and the HTTP details clients rely on (the Bearer scheme in any
case, WWW-Authenticate on 401, no exception text in headers; test_server.py checks Retry-After on 429).

The binary is MLXGP_BIN (default build/mlxgp); the model is the default GGUF (scripts/setup.sh)."""
import http.client
import json
import threading

import pytest

from test_server import KEY, Server, get, post, wait_idle

LONG = {"eos_token_id": []}  # EOS never ends these generations: only max_tokens does


@pytest.fixture(scope="module")
def server():
    s = Server("--api-key", KEY, "--max-batch", 8)
    yield s
    assert s.stop() == 0, "".join(s.log)


def raw_post(server, path, data, headers):
    """POST raw bytes; returns (status, headers, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("POST", path, body=data, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def refused(server, body, param, status=400, path="/v1/completions"):
    got, reply = post(server, path, body)
    assert got == status, reply
    assert reply["error"]["param"] == param, reply
    return reply["error"]["message"]


def test_settings_that_would_fail_a_step_spare_the_running_request(server):
    """A request running when bad ones arrive ends as it would alone; each bad one gets its own 400."""
    solo = post(server, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 200, "temperature": 0, **LONG})
    assert solo[0] == 200
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", post(server, "/v1/completions", {
        "prompt": "Once upon a time", "max_tokens": 200, "temperature": 0, **LONG})))
    t.start()
    vocab = 49152
    bad = [({"logit_bias": {str(vocab + 7): 1}}, "logit_bias"),
           ({"bad_words_ids": [[vocab + 1]]}, "bad_words_ids"),
           ({"sequence_bias": [[[vocab + 1], 1.0]]}, "sequence_bias"),
           ({"forced_eos_token_id": vocab}, "forced_eos_token_id"),
           ({"max_kv_size": 2}, "max_kv_size"),
           ({"kv_bits": 4, "kv_group_size": 7}, "kv_group_size"),
           ({"num_beams": 9}, "num_beams"),  # wider than --max-batch 8
           ({"num_beams": 2, "logit_bias": {str(vocab): 1}}, "logit_bias")]  # the beam lane checks too
    for fields, param in bad:
        message = refused(server, {"prompt": "Hi", "max_tokens": 2, **fields}, param)
        assert "\n" not in message
    t.join()
    status, reply = out["r"]
    assert status == 200 and reply["choices"][0]["text"] == solo[1]["choices"][0]["text"]
    assert reply["choices"][0]["finish_reason"] == "length"
    wait_idle(server)
    assert get(server, "/health")[1]["waiting"] == 0


def _beside_a_running_request(server, check):
    """Runs check() while a long greedy request runs, then asserts that request ended as it does alone."""
    running = {"prompt": "Once upon a time", "max_tokens": 120, "temperature": 0, **LONG}
    solo = post(server, "/v1/completions", running)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", post(server, "/v1/completions", running)))
    t.start()
    check()
    t.join()
    status, reply = out["r"]
    assert status == 200 and reply["choices"][0]["text"] == solo[1]["choices"][0]["text"]


def test_a_request_failing_in_its_own_step_fails_alone(server):
    """A request whose own settings leave no token its JSON schema allows (min_new_tokens forbids the EOS
    that ends the JSON) fails with a 400 once it gets there, and a streamed one never sends the masked
    token; a request running beside it ends as it would alone."""
    bad = {"prompt": "JSON:", "max_tokens": 300, "min_new_tokens": 300, "json_schema": {"enum": ["yes", "no"]}}

    def check():
        status, reply = post(server, "/v1/completions", bad)
        assert status == 400, reply
        assert reply["error"]["type"] == "invalid_request_error"
        assert "no token satisfies both the constraint and the other settings" in reply["error"]["message"], reply
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        conn.request("POST", "/v1/completions", body=json.dumps({**bad, "stream": True}),
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
        events = [json.loads(line[6:]) for line in conn.getresponse().read().decode().splitlines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
        conn.close()
        text = "".join(e["choices"][0]["text"] for e in events if "choices" in e)
        assert events[-1]["error"]["type"] == "invalid_request_error", events[-3:]
        assert json.loads(text) in ("yes", "no"), (text, events)  # the whole JSON, then the error: no masked token

    _beside_a_running_request(server, check)


@pytest.mark.parametrize("lane", [{"num_beams": 2}, {"prompt_lookup_num_tokens": 2}])
def test_a_beam_search_or_prompt_lookup_failing_in_its_own_step_fails_alone(server, lane):
    """The beam batch and the speculative lane end a request whose own step fails with its error (a 400), as the
    sampled rows do; the request running beside it ends as it would alone (before, the engine failed both)."""
    bad = {"prompt": "JSON:", "max_tokens": 30, "min_new_tokens": 30, "json_schema": {"enum": ["yes", "no"]}, **lane}

    def check():
        status, reply = post(server, "/v1/completions", bad)
        assert status == 400, reply
        # (prompt lookup verifies with the whole pipeline's scores: its refusal names the step's masked row)
        assert any(why in reply["error"]["message"] for why in (
            "no token satisfies both the constraint and the other settings", "mask every token of a row")), reply

    _beside_a_running_request(server, check)


def test_bodies_and_fields_refused_by_name(server):
    chat = "/v1/chat/completions"
    # Not UTF-8: a 400, with nothing of the exception in the headers.
    status, headers, body = raw_post(server, "/v1/completions", b'{"prompt": "ok", "user": "\xff", "max_tokens": 1}',
                                     {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    assert status == 400 and "UTF-8" in json.loads(body)["error"]["message"]
    assert not any(k.upper().startswith("EXCEPTION") for k in headers)
    refused(server, {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "foo": 1}]}]},
            "messages[0].content[0].foo", path=chat)
    refused(server, {"messages": [{"role": "user", "content": None}]}, "messages[0].content", path=chat)
    refused(server, {"messages": [{"role": "user"}]}, "messages[0].content", path=chat)
    # An assistant message may leave its content out (a tool call's turn).
    assert post(server, chat, {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None},
                                            {"role": "user", "content": "Hi"}], "max_tokens": 1})[0] == 200
    refused(server, {"prompt": "Hi", "temperature": 0.5, "do_sample": False}, "temperature")
    refused(server, {"prompt": "Hi", "temperature": 1e-40}, "temperature")
    refused(server, {"prompt": "Hi", "repetition_penalty": 1e-300}, "repetition_penalty")
    refused(server, {"prompt": "Hi", "n": 2, "temperature": 0}, "n")
    # A length the context (8192) cannot hold is refused, not cut short; completions take
    # max_completion_tokens too.
    message = refused(server, {"prompt": [1] * 8190, "max_tokens": 5}, "max_tokens")
    assert "8192" in message and "8195" in message
    refused(server, {"prompt": [1] * 8190, "max_completion_tokens": 5}, "max_completion_tokens")
    assert post(server, "/v1/completions", {"prompt": "Hi", "max_completion_tokens": 2})[0] == 200
    refused(server, {"prompt": "Hi", "regex": "(unclosed"}, "regex")


def test_http_details(server):
    auth = {"Content-Type": "application/json"}
    body = json.dumps({"prompt": "Hi", "max_tokens": 1}).encode()
    # RFC 7235: the scheme is case-insensitive.
    assert raw_post(server, "/v1/completions", body, {**auth, "Authorization": f"bearer {KEY}"})[0] == 200
    status, headers, _ = raw_post(server, "/v1/completions", body, {**auth, "Authorization": "Bearer wrong"})
    assert status == 401 and headers.get("WWW-Authenticate") == "Bearer"
    # curl -d sends application/x-www-form-urlencoded: a body over 8 KB says so.
    big = json.dumps({"prompt": "x " * 5000, "max_tokens": 1}).encode()
    status, _, reply = raw_post(server, "/v1/completions", big, {
        "Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {KEY}"})
    assert status == 413 and "application/json" in json.loads(reply)["error"]["message"]



def test_bodies_of_unknown_size_are_not_read(server):
    """--max-body-bytes holds for a Content-Length only in httplib 0.11: chunked and compressed bodies are
    refused before they are read (a gzip of 11 KB can unpack to 12 MB)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    body = json.dumps({"prompt": "Hi", "max_tokens": 2}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", "/v1/completions", body=iter([body]), headers=headers, encode_chunked=True)
    r = conn.getresponse()
    assert r.status == 411 and "Content-Length" in json.loads(r.read())["error"]["message"]
    conn.close()
    import gzip
    status, _, reply = raw_post(server, "/v1/completions", gzip.compress(body), {**headers, "Content-Encoding": "gzip"})
    assert status == 415 and "compressed" in json.loads(reply)["error"]["message"]


def test_nested_objects_hold_only_openai_keys(server):
    """Unknown keys inside response_format, tool_choice and tool calls are refused by name; OpenAI's own null
    fields on an assistant message (what message.model_dump() sends back) are accepted."""
    chat = "/v1/chat/completions"
    user = {"role": "user", "content": "Hi"}
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    cases = [
        ({"response_format": {"type": "json_object", "schema": {"type": "array"}}}, "response_format.schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "foo": 1}}},
         "response_format.json_schema.foo"),
        ({"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "f"}, "foo": 1}}, "tool_choice.foo"),
        ({"messages": [user, {"role": "assistant", "tool_calls": [{**call, "foo": 1}]},
                       {"role": "tool", "tool_call_id": "c1", "content": "1"}]}, "messages[1].tool_calls[0].foo"),
        ({"messages": [user, {"role": "assistant", "tool_calls": [call]}, {"role": "tool", "content": "1"}]},
         "messages[2].tool_call_id"),
        ({"messages": [{**user, "tool_calls": [call]}]}, "messages[0].tool_calls"),
    ]
    for fields, param in cases:
        refused(server, {"messages": [user], "max_tokens": 2, **fields}, param, path=chat)
    history = [user, {"role": "assistant", "content": "Hello", "refusal": None, "audio": None,
                      "function_call": None, "annotations": None}, user]
    assert post(server, chat, {"messages": history, "max_tokens": 2})[0] == 200


def test_http_routes_methods_and_models(server):
    """Another method on a route is 405 with Allow; GET /v1/models/{id} answers for the served model; a prompt
    token outside the vocabulary names 'prompt'; with include_usage every chunk carries usage (null)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("GET", "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"})
    r = conn.getresponse()
    assert r.status == 405 and r.getheader("Allow") == "POST" and json.loads(r.read())["error"]
    conn.close()
    models = get(server, "/v1/models")[1]["data"]
    status, model = get(server, "/v1/models/" + models[0]["id"])
    assert status == 200 and model == models[0]
    status, reply = get(server, "/v1/models/no-such-model")
    assert status == 404 and reply["error"]["code"] == "model_not_found"
    message = refused(server, {"prompt": [999999], "max_tokens": 2}, "prompt")
    assert "outside the vocabulary" in message
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", "/v1/completions", body=json.dumps({"prompt": "Hi", "max_tokens": 3, "stream": True,
                                                             "stream_options": {"include_usage": True}}),
                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    events = [json.loads(line[6:]) for line in conn.getresponse().read().decode().splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    conn.close()
    assert all("usage" in e for e in events) and events[-1]["usage"]["completion_tokens"] == 3
    assert all(e["usage"] is None for e in events[:-1])


def test_a_client_leaving_a_held_back_stream_frees_its_row(server):
    """A required tool call is held back until it is whole, so nothing is written while it grows: the stream
    sends SSE comments (': keep-alive') meanwhile, and a client that left is noticed within seconds."""
    import socket
    import time

    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"items": {"type": "array", "items": {"type": "string"}, "minItems": 200}},
        "required": ["items"]}}}
    body = {"messages": [{"role": "user", "content": "List many words."}], "tools": [tool],
            "tool_choice": "required", "stream": True, "max_tokens": 1500, "temperature": 0.8, "seed": 1}
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    assert b"200" in s.recv(4096)  # the headers and the role chunk
    time.sleep(1.5)
    s.close()
    left = time.time()
    assert wait_idle(server, timeout=30)
    assert time.time() - left < 6, "the row ran on after its client left"
