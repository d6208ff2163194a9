"""`mlxgp serve` under stress and at its edges: a graceful stop on SIGTERM (accepted requests finish, new
ones get 503, what outlives --shutdown-timeout is cancelled, exit 0), a non-streaming request whose
client went away frees its row, and 64 concurrent clients (streaming, non-streaming, hanging up, bad
requests, a full queue) never crash or deadlock the server.

The binary is MLXGP_BIN (default build/mlxgp); the model is the default GGUF (scripts/setup.sh)."""
import concurrent.futures as cf
import json
import random
import signal
import socket
import time

import openai

from test_server import KEY, Server, get, post, stream_request, wait_idle

LONG = {"eos_token_id": []}  # EOS never ends these generations: only max_tokens or a cancel does


def read_stream(resp):
    """All events of an SSE response: (concatenated text, finish reasons, saw [DONE])."""
    text, reasons, done = "", [], False
    for line in resp:
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        if line == b"data: [DONE]":
            done = True
            break
        event = json.loads(line[6:])
        for c in event.get("choices", []):
            text += c.get("text") or ""
            if c.get("finish_reason"):
                reasons.append(c["finish_reason"])
    return text, reasons, done


def test_sigterm_lets_accepted_requests_finish():
    s = Server("--shutdown-timeout", 60)
    try:
        body = {"prompt": "Tell me a story.", "max_tokens": 40, **LONG}
        streams = [stream_request(s, body, key=None) for _ in range(2)]
        for _, resp in streams:
            assert resp.status == 200
            assert resp.readline().startswith(b"data: ")  # both are running
        s.proc.send_signal(signal.SIGTERM)
        # Draining: /health says so with 503, a new request is refused with an OpenAI error object.
        deadline = time.time() + 10
        while get(s, "/health", key=None)[0] != 503:
            assert time.time() < deadline, "/health never reported draining"
            time.sleep(0.05)
        assert get(s, "/health", key=None)[1]["status"] == "draining"
        status, err = post(s, "/v1/completions", {"prompt": "Hi", "max_tokens": 2}, key=None)
        assert status == 503 and "shutting down" in err["error"]["message"]
        for conn, resp in streams:
            text, reasons, done = read_stream(resp)
            assert reasons == ["length"] and done, (text, reasons)
            conn.close()
        assert s.proc.wait(timeout=30) == 0, "".join(s.log)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def test_sigterm_cancels_what_outlives_the_timeout():
    s = Server("--shutdown-timeout", 1)
    try:
        conn, resp = stream_request(s, {"prompt": "Tell me a story.", "max_tokens": 8000, **LONG}, key=None)
        assert resp.readline().startswith(b"data: ")
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        text, reasons, done = read_stream(resp)
        assert reasons == ["abort"] and done  # the stream gets its last chunk, not a cut connection
        assert s.proc.wait(timeout=30) == 0, "".join(s.log)
        assert time.time() - t0 < 20
        assert any("cancelling 1 request" in line for line in s.log), "".join(s.log)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def test_non_streaming_client_that_leaves_frees_its_row():
    s = Server()
    try:
        # Raw HTTP, so the test controls when the connection closes.
        body = json.dumps({"prompt": "Tell me a story.", "max_tokens": 8000, **LONG}).encode()
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=60)
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        deadline = time.time() + 30
        while get(s, "/health", key=None)[1]["running"] != 1:
            assert time.time() < deadline
            time.sleep(0.05)
        time.sleep(3)  # past the 2 s after which the response starts with whitespace
        sock.close()
        assert wait_idle(s, key=None, timeout=20), "the abandoned request kept its row"
        # A long non-streaming request whose client stays gets valid JSON equal to the same request streamed
        # (here it outlasts the 2 s plain-response window: whitespace comes first, chunked).
        client = openai.OpenAI(base_url=s.url("/v1"), api_key="none", max_retries=0, timeout=300)
        kw = dict(model=s.model, prompt="Tell me a story.", max_tokens=400, extra_body=LONG)
        whole = client.completions.create(**kw)
        streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw) if c.choices)
        assert whole.choices[0].text == streamed and whole.usage.completion_tokens == 400
        assert s.stop() == 0, "".join(s.log)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def test_64_concurrent_clients():
    s = Server("--api-key", KEY, "--max-batch", 16, "--max-queue", 32)
    try:
        client = openai.OpenAI(base_url=s.url("/v1"), api_key=KEY, max_retries=0, timeout=300)
        prompts = ["The capital of France is", "Once upon a time", "def add(a, b):", "Colors: red,"]
        expected = {p: client.completions.create(model=s.model, prompt=p, max_tokens=6).choices[0].text
                    for p in prompts}

        def one(i):
            rng = random.Random(i)
            p = prompts[i % len(prompts)]
            kind = i % 4
            try:
                if kind == 0:  # greedy, non-streaming: must equal its solo run
                    r = client.completions.create(model=s.model, prompt=p, max_tokens=6)
                    return "ok" if r.choices[0].text == expected[p] else f"differs: {r.choices[0].text!r}"
                if kind == 1:  # greedy, streaming
                    text = "".join(c.choices[0].text for c in
                                   client.completions.create(model=s.model, prompt=p, max_tokens=6, stream=True)
                                   if c.choices)
                    return "ok" if text == expected[p] else f"differs: {text!r}"
                if kind == 2:  # hangs up after a few events
                    conn, resp = stream_request(s, {"prompt": p, "max_tokens": 500, **LONG})
                    if resp.status == 429:
                        return "429"
                    for _ in range(rng.randint(1, 4)):
                        resp.readline()
                    conn.sock.close()
                    conn.close()
                    return "ok"
                status, body = post(s, "/v1/completions", {"prompt": p, "max_tokens": 4, "top_p": 7})
                return "ok" if status == 400 and body["error"]["param"] == "top_p" else f"bad request: {status}"
            except openai.RateLimitError:
                return "429"

        with cf.ThreadPoolExecutor(64) as pool:
            outcomes = list(pool.map(one, range(64)))
        assert all(o in ("ok", "429") for o in outcomes), outcomes
        assert outcomes.count("ok") >= 32, outcomes  # at most the 32 queue places can be refused
        assert wait_idle(s, timeout=60), "rows were left behind"
        r = client.completions.create(model=s.model, prompt=prompts[0], max_tokens=6)
        assert r.choices[0].text == expected[prompts[0]]
        assert s.stop() == 0, "".join(s.log)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
