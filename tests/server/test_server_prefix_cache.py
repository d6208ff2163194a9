"""`mlxgp serve --prompt-cache-bytes`: prompt-prefix reuse across requests (mlx-lm's server LRUPromptCache).
A 3-turn chat through the pinned `openai` client gets the same replies from a server with the cache as
from one without it (run live side by side), while /metrics shows the later turns reusing the previous
turn's prompt and reply; a small budget evicts and never holds more than it allows; a bad flag is refused.

The binary is MLXGP_BIN (default build/mlxgp); the model is the default GGUF (scripts/setup.sh)."""
import subprocess

import openai
import pytest

from test_server import BIN, GGUF, KEY, Server, scrape

QUESTIONS = ["What is the capital of France?", "And of Italy?", "Which of the two is larger?"]


def metrics(server):
    samples, types = scrape(server)
    for name in ("lookups_total", "hits_total", "tokens_reused_total", "tokens_prefilled_total", "evictions_total"):
        assert types[f"mlxgp_prompt_cache_{name}"] == "counter"
    for name in ("hit_rate", "entries", "bytes", "max_bytes"):
        assert types[f"mlxgp_prompt_cache_{name}"] == "gauge"
    return {name[len("mlxgp_prompt_cache_"):]: v for (name, labels), v in samples.items()
            if name.startswith("mlxgp_prompt_cache_") and not labels}


@pytest.fixture(scope="module")
def servers():
    cached = Server("--api-key", KEY, "--prompt-cache-bytes", "512M")
    plain = Server("--api-key", KEY, "--prompt-cache-bytes", 0)
    yield cached, plain
    for s in (cached, plain):
        assert s.stop() == 0, "".join(s.log)


def client(server):
    return openai.OpenAI(base_url=server.url("/v1"), api_key=KEY, max_retries=0, timeout=300)


def test_chat_turns_reuse_the_history_and_reply_the_same(servers):
    cached, plain = servers
    assert metrics(plain)["max_bytes"] == 0
    assert metrics(cached)["max_bytes"] == 512 << 20
    history, previous = [], None
    for turn, question in enumerate(QUESTIONS):
        history.append({"role": "user", "content": question})
        before = metrics(cached)
        replies = [client(s).chat.completions.create(model=s.model, messages=history, max_tokens=24, temperature=0)
                   for s in (cached, plain)]
        # The reference is the same request on a server that prefills every prompt whole.
        assert replies[0].choices[0].message.content == replies[1].choices[0].message.content
        assert replies[0].usage == replies[1].usage
        usage = replies[0].usage
        after = metrics(cached)
        delta = {k: after[k] - before[k] for k in after}
        assert delta["lookups_total"] == 1
        assert delta["tokens_reused_total"] + delta["tokens_prefilled_total"] == usage.prompt_tokens
        if previous is None:
            assert delta["hits_total"] == 0 and delta["tokens_reused_total"] == 0
        else:
            # The previous turn's prompt and reply come back as history: all of the prompt is reused, and
            # the reply up to its last token or two (a token the last step did not feed, the template's
            # end-of-turn marker where the reply stopped at its length).
            assert delta["hits_total"] == 1
            assert previous.prompt_tokens <= delta["tokens_reused_total"]
            assert delta["tokens_reused_total"] >= previous.prompt_tokens + previous.completion_tokens - 2
            assert delta["tokens_reused_total"] < usage.prompt_tokens
        assert after["entries"] >= 1 and 0 < after["bytes"] <= after["max_bytes"]
        history.append({"role": "assistant", "content": replies[0].choices[0].message.content})
        previous = usage
    final = metrics(cached)
    assert final["hit_rate"] == pytest.approx(final["hits_total"] / final["lookups_total"])
    assert metrics(plain)["lookups_total"] == 0 and metrics(plain)["bytes"] == 0


def test_repeated_completion_reuses_all_but_its_last_token(servers):
    cached, plain = servers
    prompt = "The quick brown fox jumps over the lazy dog because"
    runs = []
    for s in (cached, cached, plain):
        before = metrics(s)
        r = client(s).completions.create(model=s.model, prompt=prompt, max_tokens=12, temperature=0)
        runs.append((r.choices[0].text, r.usage.prompt_tokens, metrics(s)["tokens_reused_total"] - before["tokens_reused_total"]))
    assert runs[0][0] == runs[1][0] == runs[2][0]
    n = runs[0][1]
    # The second time every prompt token but the last is reused: its logits choose the first token.
    assert [r[2] for r in runs] == [0, n - 1, 0]


def test_small_budget_evicts_and_stays_within_it():
    budget = 3 << 20
    s = Server("--api-key", KEY, "--prompt-cache-bytes", "3M")
    try:
        c = client(s)
        for i in range(12):
            c.completions.create(model=s.model, prompt=f"Request number {i}: tell me about the number {i * 7}.",
                                 max_tokens=16, temperature=0)
            m = metrics(s)
            assert m["max_bytes"] == budget
            assert 0 < m["bytes"] <= budget
            if m["evictions_total"] > 0:
                break
        assert m["evictions_total"] > 0
        assert m["entries"] < i + 1  # evicted entries are gone
    finally:
        assert s.stop() == 0, "".join(s.log)


@pytest.mark.parametrize("value", ["abc", "12X", "-5", "99999999999999999G"])
def test_bad_flag_is_refused(value):
    out = subprocess.run([str(BIN), "serve", "--model", str(GGUF), "--port", "0", "--prompt-cache-bytes", value],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith("[cli] --prompt-cache-bytes ")
    assert len(out.stderr.strip().splitlines()) == 1
