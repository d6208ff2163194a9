"""llama.cpp's sampler fields on `mlxgp serve` (docs/samplers.md), under llama.cpp's server names: they
are accepted and honoured (each request equals `mlxgp generate` with the same settings, in one shared
batch), and bad values or unsupported combinations are HTTP 400 OpenAI error objects naming the field."""
import concurrent.futures as cf

import pytest

from test_server import cli_generate, client, post, server  # noqa: F401 (the server and client fixtures)


PROMPT = "The cat sat on the mat. The cat sat on the mat. The cat"
CASES = [  # (request body fields, the same settings as CLI flags)
    ({"dry_multiplier": 0.8, "dry_sequence_breakers": ["\n", "."]},
     ["--dry-multiplier", 0.8, "--dry-sequence-breakers", '["\\n", "."]']),
    ({"temperature": 0.9, "seed": 4, "top_n_sigma": 1.0}, ["--temperature", 0.9, "--seed", 4, "--top-n-sigma", 1.0]),
    ({"temperature": 1.0, "seed": 5, "xtc_probability": 0.5, "xtc_threshold": 0.05},
     ["--temperature", 1.0, "--seed", 5, "--xtc-probability", 0.5, "--xtc-threshold", 0.05]),
    ({"temperature": 0.8, "seed": 6, "top_k": -1, "mirostat": 2, "mirostat_tau": 4.0, "mirostat_eta": 0.2},
     ["--temperature", 0.8, "--seed", 6, "--top-k", 0, "--mirostat", 2, "--mirostat-tau", 4.0, "--mirostat-eta", 0.2]),
]


def test_llama_sampler_fields_are_honoured(server, client):
    def run(body):
        return client.completions.create(model=server.model, prompt=PROMPT, max_tokens=20, extra_body=body).choices[0].text

    with cf.ThreadPoolExecutor(len(CASES)) as ex:  # one shared batch
        got = list(ex.map(run, [c[0] for c in CASES]))
    plain = cli_generate("--prompt", PROMPT, "--max-new-tokens", 20)["sequences"][0]["text"]
    for (body, flags), text in zip(CASES, got):
        assert text == cli_generate("--prompt", PROMPT, "--max-new-tokens", 20, *flags)["sequences"][0]["text"], body
    assert got[0] != plain  # DRY changes the greedy continuation of a repeating prompt
    # A tiny top_n_sigma keeps only the best token: sampling at any temperature is greedy.
    r = client.completions.create(model=server.model, prompt=PROMPT, max_tokens=20, temperature=1.5, seed=9,
                                  extra_body={"top_n_sigma": 0.001})
    assert r.choices[0].text == plain


@pytest.mark.parametrize("body,param,needle", [
    ({"xtc_threshold": 0.7}, "xtc_threshold", "must be in [0, 0.5]"),
    ({"top_n_sigma": "wide"}, "top_n_sigma", "expects a number"),
    ({"dry_sequence_breakers": [""]}, "dry_sequence_breakers", "empty string"),
    ({"temperature": 0.8, "mirostat": 2}, "mirostat", "set top_k=0"),
    ({"mirostat": 1, "top_k": 0}, "mirostat", "needs do_sample=true"),
])
def test_llama_sampler_errors(server, body, param, needle):
    status, out = post(server, "/v1/completions", {"prompt": "Hi", "max_tokens": 2, **body})
    assert status == 400, out
    assert out["error"]["param"] == param and needle in out["error"]["message"], out
