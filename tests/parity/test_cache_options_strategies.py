"""Every strategy honours every KV cache option or refuses it in one line.

Strategies: greedy, sampling, beam search (standard, group, constrained), speculative decoding
(self-speculation), prompt lookup, and batched requests (--prompts-file). Options: a rotating cache
(max_kv_size, kv_keep) and quantized caches (kv_bits). For each pair:
- honoured: the per-step scores move when the option bites (a window smaller than the sequence, 4-bit
  keys/values), a window that never fills changes nothing, and the first step (the same prefill for
  every strategy) has exactly greedy's logits under the same option, whose own parity with mlx-lm
  0.32's caches is tests/parity/test_kv_caches.py;
- or refused: exit 2 with one `[generate]` / `[cache]` line.
Greedy speculative decoding and prompt lookup under an option must give greedy's tokens under it; they refuse
a window that may wrap and a quantized cache that a forward reads (test_speculative_mlx_lm.py)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

PROMPT = [1, 17, 300, 42, 42, 17, 250, 3, 77, 8, 91, 17, 300, 42, 5, 6, 7, 99, 120, 17, 300, 42]
N = 12
ROTATING = ["--max-kv-size", "16", "--kv-keep", "2"]            # wraps: prompt 22 + 12 new > 16
WIDE = ["--max-kv-size", "512", "--kv-keep", "2"]               # never fills: must change nothing
# Quantized from the first token: each position is quantized on its own, so the cache holds the same
# values however a strategy chunks its forwards (with quantized_kv_start the first chunk attends
# unquantized, which depends on the chunking; mlx-lm's behaviour, checked in test_kv_caches.py).
QUANT = ["--kv-bits", "4", "--kv-group-size", "32"]

STRATEGIES = {
    "greedy": [],
    "sample": ["--do-sample", "--temperature", "0.8", "--seed", "3"],
    "beams": ["--num-beams", "3"],
    "group_beams": ["--num-beams", "4", "--num-beam-groups", "2", "--diversity-penalty", "0.5"],
    "constrained": ["--num-beams", "3", "--force-words-ids", "300"],
    "speculative": ["--use-speculative", "--draft-layers", "1", "--num-draft-tokens", "3"],
    "lookup": ["--prompt-lookup-num-tokens", "3"],
}


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    """Tiny qwen3 (head_dim 32: 4-bit groups of 32 fit)."""
    _, folder = tiny_models.make_tiny_model("qwen3", tmp_path_factory.mktemp("qwen3-cache-options"))
    return folder


def _run(run_mlxgp, folder, *flags, check=True):
    """(tokens, raw logits [n, V]) of the best sequence, or the failed process when check=False."""
    import tempfile

    from safetensors.numpy import load_file

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "steps.safetensors"
        proc = run_mlxgp("generate", "--model", folder, "--input-ids", ",".join(map(str, PROMPT)),
                         "--max-new-tokens", N, "--min-new-tokens", N, "--output-logits", "--scores-out", out,
                         "--json", *flags, check=check)
        if proc.returncode != 0:
            return proc
        doc = json.loads(proc.stdout)
        return doc["sequences"][0]["token_ids"], load_file(str(out))["logits.0"]


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("option", ["rotating", "quantized"])
def test_strategy_honours_or_refuses_cache_option(run_mlxgp, qwen3, strategy, option):
    flags = STRATEGIES[strategy]
    opt = ROTATING if option == "rotating" else QUANT
    got = _run(run_mlxgp, qwen3, *flags, *opt, check=False)
    if not isinstance(got, tuple):
        proc = got
        # A refusal must be one clear line; only speculative/lookup may refuse: a wrapping window (no roll
        # back), a quantized cache (verification forwards round differently from one-token steps).
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(("[generate]", "[cache]")), proc.stderr
        assert strategy in ("speculative", "lookup"), proc.stderr
        assert ("roll back" if option == "rotating" else "on a quantized KV cache") in lines[0]
        return
    tokens, logits = got
    plain_tokens, plain_logits = _run(run_mlxgp, qwen3, *flags)
    assert len(tokens) == N
    # Honoured: the option changes what the model computes...
    assert np.abs(logits - plain_logits).max() > 1e-3, "the cache option had no effect"
    # ...the same way for every strategy: the first step (the same prefill) sees greedy's logits under it.
    g_tokens, g_logits = _run(run_mlxgp, qwen3, *opt)
    assert np.abs(logits[0] - g_logits[0]).max() < 1e-4
    if strategy in ("speculative", "lookup"):
        assert tokens == g_tokens  # exact-match verification under the same caches


@pytest.mark.parametrize("strategy", ["greedy", "beams", "group_beams", "constrained"])
def test_window_that_never_fills_changes_nothing(run_mlxgp, qwen3, strategy):
    flags = STRATEGIES[strategy]
    tokens, logits = _run(run_mlxgp, qwen3, *flags, *WIDE)
    plain_tokens, plain_logits = _run(run_mlxgp, qwen3, *flags)
    assert tokens == plain_tokens
    assert np.abs(logits - plain_logits).max() < 1e-4


@pytest.mark.parametrize("option", ["rotating", "quantized"])
def test_batched_requests_with_cache_options_equal_their_solo_runs(run_mlxgp, qwen3, tmp_path, option):
    """Quantized requests share a batch with requests quantized alike (left-padded quantized rows),
    rotating ones with requests rotating alike (each row keeps its solo view while the ring wraps), beam
    searches too; a request without the option runs in a batch of its own kind. Each request gets its
    solo result."""
    opt = ROTATING if option == "rotating" else QUANT
    config = {"max_kv_size": 16, "kv_keep": 2} if option == "rotating" else {"kv_bits": 4, "kv_group_size": 32}
    lines = [(PROMPT, config), (PROMPT[:9], {}), (PROMPT[:5], config), (PROMPT[3:], config),
             (PROMPT, dict(config, num_beams=3)), (PROMPT[:7], dict(config, num_beams=3))]
    f = tmp_path / "requests.jsonl"
    f.write_text("\n".join(json.dumps({"input_ids": ids, "config": c}) for ids, c in lines) + "\n")
    out = run_mlxgp("generate", "--model", qwen3, "--prompts-file", f, "--max-new-tokens", N, "--min-new-tokens", N,
                    "--json").stdout.splitlines()
    docs = [json.loads(x) for x in out]
    for doc, (ids, c) in zip(docs, lines):
        flags = ["--num-beams", "3"] if c.get("num_beams") else []
        solo = run_mlxgp("generate", "--model", qwen3, "--input-ids", ",".join(map(str, ids)), "--max-new-tokens", N,
                         "--min-new-tokens", N, "--json", *(opt if c else []), *flags)
        assert doc["sequences"][0]["token_ids"] == json.loads(solo.stdout)["sequences"][0]["token_ids"], (ids, c)


@pytest.mark.parametrize("strategy", ["speculative", "lookup"])
# kv_bits from a start the run reaches is refused with speculation (test_speculative_mlx_lm.py): the cache stays
# standard through these 8 tokens, but kv_bits still prefills in steps.
@pytest.mark.parametrize("quant", [["--kv-bits", "8", "--quantized-kv-start", "1000"],
                                   ["--kv-bits", "4", "--quantized-kv-start", "1000"]])
def test_speculation_on_fused_decode_equals_greedy_under_kv_bits(run_mlxgp, default_gguf, strategy, quant):
    """The default GGUF runs a one-token forward on filled caches as one node that writes them in place
    (kernels::decode_layers). kv_bits prefills in steps, so a speculative prefill ended on such a forward,
    and dropping its result unevaluated lost the last prompt token's keys (wrong tokens, exit 0)."""
    flags = {"speculative": ["--use-speculative", "--draft-layers", "12"],
             "lookup": ["--prompt-lookup-num-tokens", "2"]}[strategy]

    def tokens(*extra):
        proc = run_mlxgp("generate", "--model", default_gguf, "--prompt", "The capital of France is",
                         "--max-new-tokens", 8, "--json", *quant, *extra)
        return json.loads(proc.stdout)["sequences"][0]["token_ids"]

    assert tokens(*flags) == tokens()
