"""`mlxgp serve --draft-model D`: speculative decoding in the server. Greedy requests that did not choose
are decoded with the draft while the server is quiet (--speculative-max-rows) and give exactly the tokens
of `mlxgp generate` without speculation; use_speculative, draft_layers and prompt_lookup_num_tokens are
honoured per request; /metrics counts the speculative requests. The draft here is the default model
itself (every candidate is accepted; what is checked is that the server's speculative path runs and keeps
the tokens), and the target's first layers (draft_layers: real rejections).

The binary is MLXGP_BIN (default build/mlxgp); the model is the default GGUF (scripts/setup.sh)."""
import concurrent.futures as cf
import subprocess

import openai
import pytest

from test_server import BIN, GGUF, Server, cli_generate, stream_request, wait_idle


@pytest.fixture(scope="module")
def server():
    s = Server("--draft-model", GGUF)
    yield s
    assert s.stop() == 0, "".join(s.log)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url("/v1"), api_key="none", max_retries=0, timeout=300)


def speculative_count(server):
    from test_server import scrape
    samples, _ = scrape(server)
    return samples[("mlxgp_speculative_requests_total", ())], samples[("mlxgp_speculative_drafted_tokens_total", ())]


PROMPT = "The capital of France is"


def test_greedy_requests_speculate_while_quiet_and_equal_generate(server, client):
    ref = cli_generate("--prompt", PROMPT, "--max-new-tokens", 30)["sequences"][0]["text"]
    n0, drafted0 = speculative_count(server)
    r = client.completions.create(model=server.model, prompt=PROMPT, max_tokens=30)
    assert r.choices[0].text == ref
    n1, drafted1 = speculative_count(server)
    assert n1 == n0 + 1 and drafted1 > drafted0  # decoded with the draft
    streamed = "".join(c.choices[0].text for c in
                       client.completions.create(model=server.model, prompt=PROMPT, max_tokens=30, stream=True)
                       if c.choices)
    assert streamed == ref and speculative_count(server)[0] == n1 + 1
    # Opted out, sampled, or with logprobs: the plain batch (the count does not move).
    r = client.completions.create(model=server.model, prompt=PROMPT, max_tokens=30,
                                  extra_body={"use_speculative": False})
    assert r.choices[0].text == ref
    client.completions.create(model=server.model, prompt=PROMPT, max_tokens=5, temperature=0.8, seed=1)
    client.completions.create(model=server.model, prompt=PROMPT, max_tokens=5, logprobs=2)
    assert speculative_count(server)[0] == n1 + 1


def test_settings_speculation_refuses_send_a_request_to_the_batch(server, client):
    """A greedy request that did not ask for speculation is never refused because of it: a rotating cache
    that would wrap before the end (which speculation cannot roll back) is decoded in the batch, with the
    tokens `mlxgp generate` gives it (before: HTTP 400 naming speculative decoding)."""
    # A rotating cache that wraps (--max-kv-size 32), and a quantized KV cache the run reads (kv_bits,
    # quantized_kv_start unset): verification forwards round differently from one-token steps and the
    # quantization amplifies it, so speculation is refused there too and the request goes to the batch
    # (before: speculated, parting from `mlxgp generate --kv-bits 8`, exit 0). Asked for, each is refused in
    # one line, as `mlxgp generate` refuses it.
    n0, _ = speculative_count(server)
    for flags, body, refusal in ((["--max-kv-size", 32], {"max_kv_size": 32}, "can roll back"),
                                 (["--kv-bits", 8], {"kv_bits": 8}, "quantized KV cache")):
        ref = cli_generate("--prompt", PROMPT, "--max-new-tokens", 30, *flags)["sequences"][0]["text"]
        r = client.completions.create(model=server.model, prompt=PROMPT, max_tokens=30, extra_body=body)
        assert r.choices[0].text == ref, flags
        assert speculative_count(server)[0] == n0, flags
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model=server.model, prompt=PROMPT, max_tokens=30,
                                      extra_body={**body, "use_speculative": True})
        assert refusal in str(e.value), flags


def test_requests_that_ask_for_speculation(server, client):
    ref = cli_generate("--prompt", PROMPT, "--max-new-tokens", 24, "--repetition-penalty", 1.2)
    text = ref["sequences"][0]["text"]
    n0, _ = speculative_count(server)
    for extra in ({"use_speculative": True, "draft_layers": 8},  # self-speculation: candidates get rejected
                  {"prompt_lookup_num_tokens": 3},
                  {"use_speculative": True}):  # the server's draft
        r = client.completions.create(model=server.model, prompt=PROMPT, max_tokens=24,
                                      extra_body={"repetition_penalty": 1.2, **extra})
        assert r.choices[0].text == text, extra
    assert speculative_count(server)[0] == n0 + 3
    # Sampling with the server's draft when asked: seeded, it repeats itself.
    kw = dict(model=server.model, prompt=PROMPT, max_tokens=12, temperature=0.9, seed=4,
              extra_body={"use_speculative": True})
    assert client.completions.create(**kw).choices[0].text == client.completions.create(**kw).choices[0].text
    # Refusals of the engine's lanes name the body's field.
    for extra, param in (({"use_speculative": True, "n": 2, "temperature": 1.0}, "use_speculative"),
                         ({"prompt_lookup_num_tokens": 2, "logprobs": 1}, "logprobs"),
                         ({"num_beams": 2, "logprobs": 2}, "logprobs"),
                         ({"use_speculative": True, "guidance_scale": 1.5}, "use_speculative")):
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model=server.model, prompt=PROMPT, max_tokens=4, extra_body=extra)
        assert e.value.body["param"] == param, (extra, e.value.body)
    with pytest.raises(openai.BadRequestError) as e:  # a client does not name files on the server
        client.completions.create(model=server.model, prompt=PROMPT, max_tokens=4, extra_body={"draft_model": "x"})
    assert e.value.body["param"] == "draft_model"


def test_busy_server_batches_greedy_requests(server, client):
    # While a long request holds a row, a greedy request joins the batch instead of speculating, and still
    # equals its solo run.
    ref = cli_generate("--prompt", "Once upon a time", "--max-new-tokens", 20)["sequences"][0]["text"]
    conn, resp = stream_request(server, {"prompt": "Tell me a story.", "max_tokens": 400, "eos_token_id": [],
                                         "use_speculative": False})
    assert resp.readline().startswith(b"data: ")
    n0, _ = speculative_count(server)
    r = client.completions.create(model=server.model, prompt="Once upon a time", max_tokens=20)
    assert r.choices[0].text == ref
    assert speculative_count(server)[0] == n0
    conn.sock.close()
    conn.close()
    assert wait_idle(server)
    # Speculative requests beside batched ones: each equals its solo run.
    reqs = [dict(prompt=PROMPT, max_tokens=20, extra_body={"prompt_lookup_num_tokens": 2}),
            dict(prompt="Once upon a time", max_tokens=20),
            dict(prompt=PROMPT, max_tokens=20, extra_body={"use_speculative": True, "draft_layers": 10}),
            dict(prompt="Colors: red,", max_tokens=15, n=2, temperature=1.0, seed=3)]
    run = lambda kw: [c.text for c in client.completions.create(model=server.model, **kw).choices]  # noqa: E731
    solo = [run(kw) for kw in reqs]
    with cf.ThreadPoolExecutor(len(reqs)) as pool:
        assert list(pool.map(run, reqs)) == solo


def test_flag_errors():
    out = subprocess.run([str(BIN), "serve", "--model", str(GGUF), "--speculative-max-rows", "2"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "--draft-model" in out.stderr
    out = subprocess.run([str(BIN), "serve", "--model", str(GGUF), "--draft-model", "/no/such/model"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and out.stderr.strip().startswith("[") and "\n" not in out.stderr.strip()
