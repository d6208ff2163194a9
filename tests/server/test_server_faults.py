"""`mlxgp serve` when something fails that is not a refusal: an exception that is not mlxgp's own (what
MLX throws when an allocation fails: "[malloc] ..."), injected with MLXGP_FAULT_THROW_AT (src/core/fault.h)
at the n-th visit of a point of the batch engine. A failure in one request's own work (its prefill, its
token choice, its beam search's step, its prompt-lookup round) ends that request alone with a 500 OpenAI
error object while the requests beside it end as they do alone; a failure of the forward every row shares
fails the requests running in it and the server goes on serving the next ones (before, any such exception
failed every running request).

The binary is MLXGP_BIN (default build/mlxgp); the model is the default GGUF (scripts/setup.sh)."""
import concurrent.futures as cf
import json
import time

import pytest

from test_server import KEY, Server, get, post, stream_request, wait_idle

LONG = {"eos_token_id": []}  # EOS never ends these generations: only max_tokens does
GREEDY = {"temperature": 0, **LONG}


def serve(point):
    return Server("--api-key", KEY, env={"MLXGP_FAULT_THROW_AT": point})


def assert_injected(status, reply, point):
    assert status == 500, reply
    err = reply["error"]
    assert err["type"] == "server_error", reply
    assert err["message"] == f"generation failed: injected failure at {point}", reply


def wait_running(server, n, timeout=60):
    deadline = time.time() + timeout
    while get(server, "/health")[1]["running"] < n:
        assert time.time() < deadline, "the request never started"
        time.sleep(0.02)


def read_events(resp):
    events = []
    for line in resp:
        line = line.strip()
        if line == b"data: [DONE]":
            break
        if line.startswith(b"data: "):
            events.append(json.loads(line[6:]))
    return events


def still_serves(server, body):
    """After the fault the server is idle, and a request equals the same request run again (the fault
    fires once)."""
    assert wait_idle(server)
    health = get(server, "/health")[1]
    assert health["status"] == "ok" and health["waiting"] == 0 and health["running"] == 0, health
    first, second = post(server, "/v1/completions", body), post(server, "/v1/completions", body)
    assert first[0] == 200 and first[1]["choices"] == second[1]["choices"], (first, second)
    return first[1]["choices"][0]["text"]


def test_a_failing_prefill_ends_only_its_request():
    point = "batch.prefill"
    s = serve(f"{point}:2")  # the first prefill is the running request's, the second the newcomer's
    try:
        running = {"prompt": "Once upon a time", "max_tokens": 150, **GREEDY}
        with cf.ThreadPoolExecutor(1) as pool:
            a = pool.submit(post, s, "/v1/completions", running)
            wait_running(s, 1)
            assert_injected(*post(s, "/v1/completions", {"prompt": "The capital of France", "max_tokens": 20}), point)
            status, reply = a.result()
        assert status == 200 and reply["choices"][0]["finish_reason"] == "length"
        assert reply["choices"][0]["text"] == still_serves(s, running)
    finally:
        assert s.stop() == 0, "".join(s.log)


def test_a_failing_token_choice_ends_only_its_request():
    """Two requests (one streamed) decode together; the fault hits one of them at a step they share: that
    one gets the error (the streamed one as an error event after its tokens), the other ends as it does
    alone. Which one depends on the order they joined in, so the test takes either."""
    point = "batch.choose"
    s = serve(f"{point}:12")
    try:
        plain = {"prompt": "Once upon a time", "max_tokens": 80, **GREEDY}
        streamed = {"prompt": "The best way to learn", "max_tokens": 80, **GREEDY}
        with cf.ThreadPoolExecutor(2) as pool:
            a = pool.submit(post, s, "/v1/completions", plain)
            conn, resp = stream_request(s, streamed)
            assert resp.status == 200
            events = read_events(resp)
            conn.close()
            status, reply = a.result()
        text = "".join(c.get("text") or "" for e in events for c in e.get("choices", []))
        stream_failed = "error" in events[-1]
        plain_failed = status != 200
        assert stream_failed != plain_failed, (status, reply, events[-2:])
        if plain_failed:
            assert_injected(status, reply, point)
            assert text == still_serves(s, streamed)
        else:
            assert events[-1]["error"]["type"] == "server_error"
            assert events[-1]["error"]["message"] == f"generation failed: injected failure at {point}"
            assert reply["choices"][0]["text"] == still_serves(s, plain)
    finally:
        assert s.stop() == 0, "".join(s.log)


@pytest.mark.parametrize("lane, point", [({"num_beams": 2}, "batch.beam_step"),
                                         ({"prompt_lookup_num_tokens": 2}, "batch.speculative_round")])
def test_a_failing_beam_search_or_prompt_lookup_ends_only_its_request(lane, point):
    s = serve(f"{point}:3")
    try:
        running = {"prompt": "Once upon a time", "max_tokens": 150, **GREEDY}
        with cf.ThreadPoolExecutor(1) as pool:
            a = pool.submit(post, s, "/v1/completions", running)
            wait_running(s, 1)
            assert_injected(*post(s, "/v1/completions", {"prompt": "Hello", "max_tokens": 20, **GREEDY, **lane}),
                            point)
            status, reply = a.result()
        assert status == 200 and reply["choices"][0]["text"] == still_serves(s, running)
        # The lane itself goes on: the same request now runs.
        assert post(s, "/v1/completions", {"prompt": "Hello", "max_tokens": 20, **GREEDY, **lane})[0] == 200
    finally:
        assert s.stop() == 0, "".join(s.log)


def test_a_failing_shared_step_fails_its_requests_and_the_server_goes_on():
    point = "batch.step"
    s = serve(f"{point}:10")
    try:
        bodies = [{"prompt": p, "max_tokens": 60, **GREEDY} for p in ("Once upon a time", "The best way to learn")]
        with cf.ThreadPoolExecutor(2) as pool:
            replies = list(pool.map(lambda b: post(s, "/v1/completions", b), bodies))
        # Each was running (the tenth step comes before either ends) or joined after the failure.
        failed = [r for r in replies if r[0] != 200]
        assert failed, replies
        for r in failed:
            assert_injected(*r, point)
        for body in bodies:
            still_serves(s, body)
    finally:
        assert s.stop() == 0, "".join(s.log)
