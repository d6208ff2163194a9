"""`mlxgp serve` through the official `openai` client: greedy results equal `mlxgp generate` (run live
here), concurrent requests each equal their solo run (continuous batching changes nothing), streamed
deltas concatenate to the whole text, usage counts, errors as OpenAI error objects, the API key, a full
queue, a client that disconnects mid-stream, /metrics (Prometheus text, parsed here), logprobs in both
OpenAI formats (equal to `mlxgp generate --output-logprobs --scores-out`), --max-tokens-cap and
--chat-template.

The binary is MLXGP_BIN (default build/mlxgp); the model is the default GGUF (scripts/setup.sh)."""
import concurrent.futures as cf
import http.client
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import math
import re

import numpy as np
import openai
import pytest
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MLXGP_CACHE", ROOT / ".cache"))
BIN = Path(os.environ.get("MLXGP_BIN", ROOT / "build" / "mlxgp"))
GGUF = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
KEY = "test-key-123"


class Server:
    def __init__(self, *extra, model=GGUF, env=None):
        assert BIN.exists(), f"mlxgp binary not found at {BIN}: run `make build` (or set MLXGP_BIN)"
        assert Path(model).exists(), f"model missing at {model}: run scripts/setup.sh"
        self.proc = subprocess.Popen([str(BIN), "serve", "--model", str(model), "--port", "0", *map(str, extra)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.log = []
        deadline = time.time() + 60
        self.port = None
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            if line.startswith("[serve] model"):
                self.model = line.split("'")[1]
                self.port = int(line.rsplit(":", 1)[1])
                break
        assert self.port, "server did not start:\n" + "".join(self.log)
        # Keep draining stderr so the server never blocks on a full pipe.
        threading.Thread(target=lambda: [self.log.append(l) for l in self.proc.stderr], daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="module")
def server():
    s = Server("--api-key", KEY)
    yield s
    assert s.stop() == 0, "".join(s.log)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url("/v1"), api_key=KEY, max_retries=0, timeout=300)


def post(server, path, body, key=KEY, raw=None):
    """POST JSON (or raw bytes); returns (status, parsed body)."""
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(server.url(path), data=data, method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(server, path, key=KEY):
    req = urllib.request.Request(server.url(path), headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def cli_generate(*args, model=GGUF):
    out = subprocess.run([str(BIN), "generate", "--model", str(model), *map(str, args), "--json"],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout)


def test_health_and_models(server, client):
    assert get(server, "/health", key=None) == (200, {"status": "ok", "running": 0, "waiting": 0})
    models = client.models.list()
    assert [m.id for m in models.data] == [server.model] == ["SmolLM2-135M-Instruct.Q4_1"]
    assert 0 < time.time() - models.data[0].created < 600  # when the server loaded it


def test_greedy_completion_equals_cli(server, client):
    prompt = "The capital of France is"
    ref = cli_generate("--prompt", prompt, "--max-new-tokens", 24)
    r = client.completions.create(model=server.model, prompt=prompt, max_tokens=24, temperature=0)
    seq = ref["sequences"][0]
    assert r.choices[0].text == seq["text"]
    assert r.usage.prompt_tokens == len(ref["prompt_token_ids"])
    assert r.usage.completion_tokens == len(seq["token_ids"])
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.choices[0].finish_reason == ("length" if seq["finish_reason"] == "length" else "stop")
    # The same prompt as token ids gives the same text.
    r2 = client.completions.create(model=server.model, prompt=ref["prompt_token_ids"], max_tokens=24, temperature=0)
    assert r2.choices[0].text == seq["text"]


def test_greedy_chat_equals_cli(server, client):
    question = "What is the capital of France?"
    ref = cli_generate("--chat", "--prompt", question, "--max-new-tokens", 40)
    r = client.chat.completions.create(model=server.model, messages=[{"role": "user", "content": question}],
                                       max_completion_tokens=40, temperature=0)
    seq = ref["sequences"][0]
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == seq["text"]
    assert r.usage.prompt_tokens == len(ref["prompt_token_ids"])
    assert r.usage.completion_tokens == len(seq["token_ids"])
    assert r.choices[0].finish_reason == ("stop" if seq["finish_reason"] == "eos" else "length")


def test_hf_fields_equal_cli(server, client):
    prompt = "Once upon a time"
    ref = cli_generate("--prompt", prompt, "--max-new-tokens", 20, "--repetition-penalty", 1.3,
                       "--no-repeat-ngram-size", 3)
    r = client.completions.create(model=server.model, prompt=prompt, max_tokens=20,
                                  extra_body={"repetition_penalty": 1.3, "no_repeat_ngram_size": 3})
    assert r.choices[0].text == ref["sequences"][0]["text"]


def test_beam_search_equals_cli(server, client):
    # Beam searches share the engine's rows with sampled requests; each equals `mlxgp generate` alone.
    prompt = "The best way to learn a language is"
    ref = cli_generate("--prompt", prompt, "--max-new-tokens", 16, "--num-beams", 3, "--num-return-sequences", 2,
                       "--length-penalty", 0.8)
    kw = dict(model=server.model, prompt=prompt, max_tokens=16, n=2,
              extra_body={"num_beams": 3, "length_penalty": 0.8})
    chat_q = "Name a fruit."
    chat_ref = cli_generate("--chat", "--prompt", chat_q, "--max-new-tokens", 12, "--num-beams", 2)
    with cf.ThreadPoolExecutor(3) as pool:
        busy = pool.submit(client.completions.create, model=server.model, prompt="Count: one, two,", max_tokens=60)
        beams = pool.submit(client.completions.create, **kw)
        chat = pool.submit(client.chat.completions.create, model=server.model, max_completion_tokens=12,
                           messages=[{"role": "user", "content": chat_q}], extra_body={"num_beams": 2})
        busy.result()
        r, c = beams.result(), chat.result()
    assert [x.text for x in r.choices] == [s["text"] for s in ref["sequences"]]
    assert r.usage.completion_tokens == sum(len(s["token_ids"]) for s in ref["sequences"])
    assert c.choices[0].message.content == chat_ref["sequences"][0]["text"]


# Requests with different settings: each must get exactly what it gets alone.
REQUESTS = [
    dict(prompt="The capital of France is", max_tokens=30),
    dict(prompt="def fibonacci(n):", max_tokens=40),
    dict(prompt="Once upon a time", max_tokens=25, extra_body={"repetition_penalty": 1.3}),
    dict(prompt="The best way to learn", max_tokens=35, presence_penalty=0.5, frequency_penalty=0.3),
    dict(prompt="Hi", max_tokens=20, temperature=0.8, seed=7, top_p=0.9),
    dict(prompt="List three colors:", max_tokens=28, logit_bias={"11": -100}),
    dict(prompt="Water boils at", max_tokens=15, temperature=1.2, seed=3, extra_body={"top_k": 20}),
    dict(prompt="In 1492,", max_tokens=33, extra_body={"no_repeat_ngram_size": 2}),
    dict(prompt="The weather today", max_tokens=22, temperature=0.7, seed=5, extra_body={"min_p": 0.1}),
    dict(prompt="My favourite food", max_tokens=18, temperature=0.9, seed=9, extra_body={"typical_p": 0.8}),
    dict(prompt="Python is", max_tokens=26, extra_body={"min_new_tokens": 20, "suppress_tokens": [28]}),
    dict(prompt="A poem about the sea:", max_tokens=30, stop=["\n\n", "sea."]),
    dict(prompt="Count: one, two,", max_tokens=12, n=2, temperature=1.0, seed=21),
    dict(prompt=[504, 3575, 282, 4649, 314], max_tokens=19),
    dict(prompt="The moon", max_tokens=24, extra_body={"bad_words_ids": [[253], [30]]}),
    dict(prompt="Why is the sky blue?", max_tokens=36, frequency_penalty=1.0, seed=2),
]


def test_concurrent_requests_equal_solo(server, client):
    def run(kw):
        r = client.completions.create(model=server.model, **kw)
        return [c.text for c in r.choices], [c.finish_reason for c in r.choices], r.usage.completion_tokens

    solo = [run(kw) for kw in REQUESTS]
    with cf.ThreadPoolExecutor(len(REQUESTS)) as pool:
        together = list(pool.map(run, REQUESTS))
    assert together == solo


def test_split_prefills_equal_solo():
    # Three prompt tokens a step while other rows decode: every concurrent prompt (5-7 tokens here) joins over
    # several steps, and each request still gets its result on the shared server, alone.
    s = Server("--prefill-step-tokens", 3)
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="unused", max_retries=0, timeout=300)

        def run(kw):
            r = c.completions.create(model=s.model, **kw)
            return [x.text for x in r.choices], [x.finish_reason for x in r.choices], r.usage.completion_tokens

        with cf.ThreadPoolExecutor(len(REQUESTS)) as pool:
            together = list(pool.map(run, REQUESTS))
        solo = [run(kw) for kw in REQUESTS]
        assert together == solo
    finally:
        assert s.stop() == 0, "".join(s.log)


def test_streaming_concatenates_to_whole(server, client):
    messages = [{"role": "user", "content": "Name three fruits."}]
    whole = client.chat.completions.create(model=server.model, messages=messages, max_tokens=48)
    stream = client.chat.completions.create(model=server.model, messages=messages, max_tokens=48, stream=True,
                                            stream_options={"include_usage": True})
    text, finish, usage, roles = "", None, None, []
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.role:
                roles.append(c.delta.role)
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert roles == ["assistant"]
    assert text == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens

    kw = dict(model=server.model, prompt="The capital of France is", max_tokens=20)
    whole = client.completions.create(**kw)
    pieces = [c.choices[0].text for c in client.completions.create(**kw, stream=True) if c.choices]
    assert "".join(pieces) == whole.choices[0].text


def test_stop_strings_cut_the_text(server, client):
    kw = dict(model=server.model, prompt="The capital of France is", max_tokens=24)
    full = client.completions.create(**kw).choices[0].text
    assert "\n" in full  # " Paris.\n\nThe answer..." with this model
    cut = client.completions.create(**kw, stop=["\n"])
    assert cut.choices[0].text == full[:full.index("\n")]
    assert cut.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(**kw, stop=["\n"], stream=True) if c.choices)
    assert streamed == cut.choices[0].text


def test_n_choices_and_prompt_lists(server, client):
    kw = dict(model=server.model, prompt="Hi", max_tokens=8, n=3, temperature=0.9, seed=11)
    r = client.completions.create(**kw)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    again = client.completions.create(**kw)  # seeded: the same choices
    assert [c.text for c in again.choices] == [c.text for c in r.choices]
    assert again.usage.completion_tokens == r.usage.completion_tokens >= 3
    two = client.completions.create(model=server.model, prompt=["The capital of France is", "Hi"], max_tokens=10)
    assert [c.index for c in two.choices] == [0, 1]
    solo = client.completions.create(model=server.model, prompt="Hi", max_tokens=10)
    assert two.choices[1].text == solo.choices[0].text


def test_tokenize_detokenize(server):
    status, tok = post(server, "/tokenize", {"prompt": "Hello world"})
    assert status == 200 and tok["tokens"] == [19556, 905] and tok["count"] == 2
    assert post(server, "/detokenize", {"tokens": tok["tokens"]}) == (200, {"prompt": "Hello world"})
    status, chat = post(server, "/tokenize", {"messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200 and chat["count"] > 5


def error_of(exc_info):
    body = exc_info.value.body
    assert set(body) == {"message", "type", "param", "code"}, body
    return body


def test_structured_outputs_equal_cli(server, client, tmp_path):
    """OpenAI response_format (json_schema, json_object) and the fields json_schema / regex / grammar by
    their mlxgp names (llama.cpp's request spelling) give the CLI's constrained result."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"], "additionalProperties": False}
    f = tmp_path / "schema.json"
    f.write_text(json.dumps(schema))
    question = [{"role": "user", "content": "Give the largest city of France as JSON."}]
    ref = cli_generate("--chat", "--prompt", question[0]["content"], "--max-new-tokens", 48, "--json-schema", f)
    r = client.chat.completions.create(model=server.model, messages=question, max_completion_tokens=48, temperature=0,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "city", "schema": schema}})
    assert r.choices[0].message.content == ref["sequences"][0]["text"]
    if r.choices[0].finish_reason == "stop":
        assert list(json.loads(r.choices[0].message.content)) == ["city", "population"]
    r = client.chat.completions.create(model=server.model, messages=question, max_completion_tokens=48, temperature=0,
                                       extra_body={"json_schema": schema})
    assert r.choices[0].message.content == ref["sequences"][0]["text"]
    ref = cli_generate("--prompt", "Is water wet?", "--max-new-tokens", 24, "--regex", "(Yes|No)[.]")
    r = client.completions.create(model=server.model, prompt="Is water wet?", max_tokens=24, temperature=0,
                                  extra_body={"regex": "(Yes|No)[.]"})
    assert r.choices[0].text == ref["sequences"][0]["text"] and r.choices[0].text in ("Yes.", "No.")
    r = client.chat.completions.create(model=server.model, messages=question, max_completion_tokens=48, temperature=0,
                                       response_format={"type": "json_object"})
    if r.choices[0].finish_reason == "stop":
        json.loads(r.choices[0].message.content)
    for bad in ({"type": "yaml"}, {"type": "json_schema"}, {"type": "json_schema", "json_schema": {"schema": 3}}):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=server.model, messages=question, response_format=bad)
        assert error_of(e)["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as e:  # an invalid regex: 400 naming the field, not a dead server
        client.completions.create(model=server.model, prompt="Hi", extra_body={"regex": "(unclosed"})
    assert "regex" in error_of(e)["message"]


def test_errors(server, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=server.model, prompt="Hi", extra_body={"bogus_field": 1})
    assert error_of(e)["param"] == "bogus_field"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=server.model, prompt="Hi", temperature="hot")
    assert error_of(e)["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=server.model, prompt="Hi", top_p=1.5)
    assert error_of(e)["param"] == "top_p"
    with pytest.raises(openai.BadRequestError) as e:  # not implemented yet: refused, not ignored
        client.chat.completions.create(model=server.model, messages=[{"role": "user", "content": "Hi"}],
                                       tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    assert error_of(e)["param"] == "tools"
    with pytest.raises(openai.BadRequestError) as e:  # n > 1 needs sampling (the CLI's validation)
        client.completions.create(model=server.model, prompt="Hi", n=2)
    error_of(e)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=server.model, messages=[{"role": "wizard", "content": "Hi"}])
    assert error_of(e)["param"] == "messages[0].role"
    with pytest.raises(openai.BadRequestError) as e:  # this server has no --draft-model
        client.completions.create(model=server.model, prompt="Hi", extra_body={"use_speculative": True})
    assert error_of(e)["param"] == "use_speculative"
    with pytest.raises(openai.BadRequestError) as e:  # beams are known only at the end: no stream
        client.completions.create(model=server.model, prompt="Hi", stream=True, extra_body={"num_beams": 2})
    assert error_of(e)["param"] == "num_beams"
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="no-such-model", prompt="Hi")
    assert error_of(e)["code"] == "model_not_found"
    status, body = post(server, "/v1/completions", None, raw=b"{not json")
    assert status == 400 and "error" in body
    status, body = post(server, "/v1/completions", {"prompt": "x" * 100000, "max_tokens": 1})
    assert status == 400 and "context" in body["error"]["message"] and body["error"]["param"] == "prompt"
    status, body = get(server, "/v1/nothing-here")
    assert status == 404 and body["error"]["type"] == "not_found_error"


def test_api_key(server):
    bad = openai.OpenAI(base_url=server.url("/v1"), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.models.list()
    error_of(e)
    assert get(server, "/v1/models", key=None)[0] == 401
    assert get(server, "/health", key=None)[0] == 200


def stream_request(server, body, key=KEY):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    conn.request("POST", "/v1/completions", json.dumps({**body, "stream": True}),
                 {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})})
    return conn, conn.getresponse()


def wait_idle(server, key=KEY, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, h = get(server, "/health", key=key)
        if h["running"] == 0 and h["waiting"] == 0:
            return True
        time.sleep(0.1)
    return False


def test_disconnect_mid_stream_cancels(server, client):
    # A long generation (EOS off): read the first event, then hang up.
    conn, resp = stream_request(server, {"prompt": "Tell me a story.", "max_tokens": 2000, "eos_token_id": []})
    assert resp.status == 200
    assert resp.readline().startswith(b"data: ")
    assert get(server, "/health")[1]["running"] == 1
    conn.sock.close()
    conn.close()
    assert wait_idle(server), "the disconnected request kept its row"
    r = client.completions.create(model=server.model, prompt="The capital of France is", max_tokens=5)
    assert r.choices[0].text


def test_queue_full_gives_429():
    s = Server("--max-batch", 1, "--max-queue", 1)
    try:
        long = {"prompt": "Tell me a story.", "max_tokens": 2000, "eos_token_id": []}
        a_conn, a = stream_request(s, long, key=None)
        assert a.readline().startswith(b"data: ")  # A holds the only row
        b_conn, b = stream_request(s, long, key=None)   # B waits (headers come once it is queued)
        assert b.status == 200
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        conn.request("POST", "/v1/completions", json.dumps({"prompt": "Hi", "max_tokens": 2}),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        body = json.loads(r.read())
        conn.close()
        assert r.status == 429 and body["error"]["type"] == "rate_limit_error"
        assert r.getheader("Retry-After") == "1"  # a hint to back off (RFC 9110 section 10.2.3)
        a_conn.close()
        b_conn.close()
        assert wait_idle(s, key=None)
    finally:
        assert s.stop() == 0, "".join(s.log)


# --- /metrics (Prometheus text format, parsed with a regex: prometheus_client is not a dependency) ---

METRIC_META = re.compile(r'^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$')
METRIC_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)'
                           r'(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})?'
                           r' (-?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|Inf)|\+Inf|NaN)$')


def scrape(server):
    """GET /metrics -> ({(name, ((label, value), ...)): value}, {family: type}); asserts the format."""
    req = urllib.request.Request(server.url("/metrics"), headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    assert text.endswith("\n")
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("#"):
            m = METRIC_META.match(line)
            assert m, f"bad metadata line: {line!r}"
            if m[1] == "TYPE":
                assert m[3] in ("counter", "gauge", "histogram"), line
                types[m[2]] = m[3]
            continue
        m = METRIC_SAMPLE.match(line)
        assert m, f"bad sample line: {line!r}"
        labels = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m[2] or "")))
        key = (m[1], labels)
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(m[3].replace("Inf", "inf"))
    for name, _ in samples:
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert types.get(name) in ("counter", "gauge") or types.get(family) == "histogram", f"undeclared {name}"
    for family, kind in types.items():
        if kind != "histogram":
            continue
        buckets = sorted(((float(dict(l)["le"].replace("Inf", "inf")), v) for (n, l), v in samples.items()
                          if n == family + "_bucket"))
        assert buckets and buckets[-1][0] == math.inf, family
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"{family} buckets are not cumulative"
        assert counts[-1] == samples[(family + "_count", ())]
    return samples, types


def test_metrics(server, client):
    before, types = scrape(server)
    assert types["mlxgp_requests_total"] == "counter"
    assert types["mlxgp_time_to_first_token_seconds"] == "histogram"
    assert types["mlxgp_inter_token_latency_seconds"] == "histogram"
    for gauge in ("mlxgp_queue_depth", "mlxgp_running_rows", "mlxgp_running_requests", "mlxgp_batch_occupancy"):
        assert types[gauge] == "gauge"
    r = client.completions.create(model=server.model, prompt="The capital of France is", max_tokens=8)
    stream = client.chat.completions.create(model=server.model, messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=8, stream=True, stream_options={"include_usage": True})
    usage = [c.usage for c in stream if c.usage][0]
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=server.model, prompt="Hi", top_p=2)

    def delta(after, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    # A request is counted once its response is written: poll until the three show.
    deadline = time.time() + 10
    while True:
        after, _ = scrape(server)
        counted = [delta(after, "mlxgp_requests_total", endpoint=e, status=st)
                   for e, st in (("/v1/completions", "200"), ("/v1/chat/completions", "200"), ("/v1/completions", "400"))]
        if min(counted) >= 1 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert delta(after, "mlxgp_requests_total", endpoint="/v1/completions", status="200") == 1
    assert delta(after, "mlxgp_requests_total", endpoint="/v1/chat/completions", status="200") == 1
    assert delta(after, "mlxgp_requests_total", endpoint="/v1/completions", status="400") == 1
    assert delta(after, "mlxgp_requests_total", endpoint="/metrics", status="200") >= 1
    assert delta(after, "mlxgp_prompt_tokens_total") == r.usage.prompt_tokens + usage.prompt_tokens
    assert delta(after, "mlxgp_generation_tokens_total") == r.usage.completion_tokens + usage.completion_tokens
    assert delta(after, "mlxgp_time_to_first_token_seconds_count") == 2
    assert delta(after, "mlxgp_time_to_first_token_seconds_sum") > 0
    assert delta(after, "mlxgp_inter_token_latency_seconds_count") == r.usage.completion_tokens + usage.completion_tokens - 2
    assert delta(after, "mlxgp_engine_steps_total") >= 1
    assert delta(after, "mlxgp_batch_rows_count") == delta(after, "mlxgp_engine_steps_total")
    assert after[("mlxgp_queue_depth", ())] == 0 and after[("mlxgp_running_rows", ())] == 0
    assert after[("mlxgp_max_batch_rows", ())] == 16
    # Unknown routes share one label (no label per path).
    get(server, "/no/such/path")
    time.sleep(0.2)
    assert ("mlxgp_requests_total", (("endpoint", "/no/such/path"), ("status", "404"))) not in scrape(server)[0]


def test_metrics_gauges_while_running(server):
    conn, resp = stream_request(server, {"prompt": "Tell me a story.", "max_tokens": 2000, "eos_token_id": []})
    try:
        assert resp.readline().startswith(b"data: ")
        deadline = time.time() + 10  # the gauges are published after each engine step
        while True:
            samples, _ = scrape(server)
            if samples[("mlxgp_running_rows", ())] == 1 or time.time() > deadline:
                break
            time.sleep(0.02)
        assert samples[("mlxgp_running_rows", ())] == 1 and samples[("mlxgp_running_requests", ())] == 1
        assert samples[("mlxgp_batch_occupancy", ())] == 1 / 16
    finally:
        conn.sock.close()
        conn.close()
    assert wait_idle(server)


# --- logprobs: log_softmax of the processed scores (after the processors and warpers, temperature
# included), i.e. exactly `mlxgp generate --output-logprobs`; top_logprobs from `--scores-out`. ---

def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def token_texts(server, ids):
    return [post(server, "/detokenize", {"tokens": [t]})[1]["prompt"] for t in ids]


def test_completion_logprobs_equal_cli(server, client, tmp_path):
    prompt, k = "The capital of France is", 5
    out = tmp_path / "scores.safetensors"
    ref = cli_generate("--prompt", prompt, "--max-new-tokens", 12, "--output-logprobs", "--scores-out", out)
    seq = ref["sequences"][0]
    steps = log_softmax(load_file(str(out))["scores.0"])  # [n, V]
    r = client.completions.create(model=server.model, prompt=prompt, max_tokens=12, temperature=0, logprobs=k)
    c = r.choices[0]
    assert c.text == seq["text"]
    lp = c.logprobs
    assert lp.tokens == token_texts(server, seq["token_ids"])
    np.testing.assert_allclose(lp.token_logprobs, seq["logprobs"], atol=1e-4)
    assert "".join(lp.tokens) == c.text  # ASCII text: each token's text, in order
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    for step, top in enumerate(lp.top_logprobs):
        best = np.argsort(-steps[step])[:k]
        # The normalizer is the device's float32 logsumexp (checked against the CLI above): compare the
        # gaps to the likeliest token here.
        values = sorted(top.values(), reverse=True)
        np.testing.assert_allclose(np.array(values) - values[0], steps[step][best] - steps[step][best[0]], atol=1e-4)
        assert abs(values[0] - lp.token_logprobs[step]) < 1e-6
        assert lp.tokens[step] in top  # greedy: the chosen token is the likeliest
        assert list(top)[0] == token_texts(server, [int(best[0])])[0]
    # Streaming: the chunks' logprobs concatenate to the whole ones.
    tokens, values, offsets, text = [], [], [], ""
    for chunk in client.completions.create(model=server.model, prompt=prompt, max_tokens=12, temperature=0,
                                           logprobs=k, stream=True):
        for ch in chunk.choices:
            text += ch.text
            if ch.logprobs:
                tokens += ch.logprobs.tokens
                values += ch.logprobs.token_logprobs
                offsets += ch.logprobs.text_offset
    assert text == c.text and tokens == lp.tokens and offsets == lp.text_offset
    np.testing.assert_allclose(values, lp.token_logprobs, atol=1e-6)


def test_logprobs_after_temperature_equal_cli(server, client, tmp_path):
    """Sampling at T: the logprobs are of the distribution the token was drawn from (logits / T)."""
    prompt, temperature = "Once upon a time", 0.7
    ref = cli_generate("--prompt", prompt, "--max-new-tokens", 10, "--temperature", temperature, "--seed", 5,
                       "--output-logprobs")
    r = client.completions.create(model=server.model, prompt=prompt, max_tokens=10, temperature=temperature, seed=5,
                                  logprobs=2)
    lp = r.choices[0].logprobs
    assert r.choices[0].text == ref["sequences"][0]["text"]
    np.testing.assert_allclose(lp.token_logprobs, ref["sequences"][0]["logprobs"], atol=1e-4)
    # The first step from the raw logits (a greedy run's scores are the logits): log_softmax(logits / T).
    out = tmp_path / "logits.safetensors"
    cli_generate("--prompt", prompt, "--max-new-tokens", 1, "--scores-out", out)
    first = log_softmax(load_file(str(out))["scores.0"][0] / temperature)
    token = ref["sequences"][0]["token_ids"][0]
    assert abs(lp.token_logprobs[0] - first[token]) < 1e-3
    assert abs(sorted(lp.top_logprobs[0].values())[-1] - first.max()) < 1e-3


def test_logprobs_cut_with_stop(server, client):
    kw = dict(model=server.model, prompt="The capital of France is", max_tokens=24, temperature=0, logprobs=1, stop=["\n"])
    c = client.completions.create(**kw).choices[0]
    assert c.text == " Paris." and "".join(c.logprobs.tokens) == c.text  # the "\n" token left with the stop
    streamed = [t for ch in client.completions.create(**kw, stream=True) for x in ch.choices if x.logprobs
                for t in x.logprobs.tokens]
    assert streamed == c.logprobs.tokens


def test_chat_logprobs_equal_cli(server, client):
    question, k = "What is the capital of France?", 3
    ref = cli_generate("--chat", "--prompt", question, "--max-new-tokens", 16, "--output-logprobs")
    seq = ref["sequences"][0]
    kw = dict(model=server.model, messages=[{"role": "user", "content": question}], max_completion_tokens=16,
              temperature=0, logprobs=True, top_logprobs=k)
    r = client.chat.completions.create(**kw)
    content = r.choices[0].logprobs.content
    assert r.choices[0].message.content == seq["text"]
    assert [e.token for e in content] == token_texts(server, seq["token_ids"])  # a final <|im_end|> included
    np.testing.assert_allclose([e.logprob for e in content], seq["logprobs"], atol=1e-4)
    for e in content:
        assert e.bytes == list(e.token.encode())
        assert len(e.top_logprobs) == k and e.top_logprobs[0].token == e.token
        assert [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)
        assert abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6
    streamed = [e for chunk in client.chat.completions.create(**kw, stream=True) for c in chunk.choices
                if c.logprobs for e in c.logprobs.content]
    assert [(e.token, round(e.logprob, 5)) for e in streamed] == [(e.token, round(e.logprob, 5)) for e in content]
    # logprobs: true alone gives each token's logprob and no alternatives.
    r = client.chat.completions.create(**{**kw, "top_logprobs": None})
    assert all(e.top_logprobs == [] for e in r.choices[0].logprobs.content)
    # Without logprobs: null.
    r = client.chat.completions.create(model=server.model, messages=kw["messages"], max_tokens=2)
    assert r.choices[0].logprobs is None


def test_logprobs_errors(server, client):
    msgs = [{"role": "user", "content": "Hi"}]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=server.model, messages=msgs, top_logprobs=2)
    assert error_of(e)["param"] == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=server.model, messages=msgs, logprobs=True, top_logprobs=21)
    assert error_of(e)["param"] == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=server.model, prompt="Hi", logprobs=-1)
    assert error_of(e)["param"] == "logprobs"
    status, body = post(server, "/v1/chat/completions", {"messages": msgs, "logprobs": 3})
    assert status == 400 and body["error"]["param"] == "logprobs"


# --- --max-tokens-cap (clamps) and --chat-template (replaces the model's) ---

def test_max_tokens_cap_and_chat_template(tmp_path):
    tpl = tmp_path / "template.jinja"
    tpl.write_text("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                   "{% if add_generation_prompt %}<assistant>{% endif %}")
    s = Server("--max-tokens-cap", 5, "--chat-template", tpl)
    try:
        c = openai.OpenAI(base_url=s.url("/v1"), api_key="unused", max_retries=0, timeout=300)
        r = c.completions.create(model=s.model, prompt="Once upon a time", max_tokens=100,
                                 extra_body={"eos_token_id": []})
        assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"
        # Clamped, never refused: not even a length beyond the context (refused without the cap).
        r = c.completions.create(model=s.model, prompt="Once upon a time", max_tokens=100000)
        assert r.usage.completion_tokens <= 5
        msgs = [{"role": "user", "content": "Hi"}]
        r = c.chat.completions.create(model=s.model, messages=msgs)  # no length: the context, capped
        assert r.usage.completion_tokens <= 5
        status, tok = post(s, "/tokenize", {"messages": msgs}, key=None)
        _, plain = post(s, "/tokenize", {"prompt": "<user>Hi\n<assistant>", "add_special_tokens": False}, key=None)
        assert status == 200 and tok["tokens"] == plain["tokens"]
        assert r.usage.prompt_tokens == tok["count"]
    finally:
        assert s.stop() == 0, "".join(s.log)
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}")
    for extra in (["--chat-template", bad], ["--chat-template", tmp_path / "missing.jinja"], ["--max-tokens-cap", 0]):
        p = subprocess.run([str(BIN), "serve", "--model", str(GGUF), "--port", "0", *map(str, extra)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode != 0 and ("chat-template" in p.stderr or "max-tokens-cap" in p.stderr), p.stderr
