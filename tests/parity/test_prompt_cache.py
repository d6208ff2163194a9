"""Saved prompt caches (`mlxgp cache-prompt`, `generate --prompt-cache`): generation that starts from
a saved prefix gives the same tokens as generation without it, and transformers' greedy tokens on
the same GGUF checkpoint (run live); bad files, other models and prompts that do not start with the
cached tokens are one-line errors."""
import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402
from test_generate_parity import NEAR_TIE, reference_greedy, reference_top2_gap  # noqa: E402

TEXT = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
        "movable metal type, oil-based ink and a wooden press. Within fifty years,")
PREFIX_TOKENS = 24
MAX_NEW = 24


@pytest.fixture(scope="module")
def prompt(hf_default):
    ids = hf_default[1](TEXT).input_ids
    assert len(ids) > PREFIX_TOKENS + 4
    return ids


@pytest.fixture(scope="module")
def saved(prompt, default_gguf, run_mlxgp, tmp_path_factory):
    path = tmp_path_factory.mktemp("prompt-cache") / "prefix.safetensors"
    run_mlxgp("cache-prompt", "--model", default_gguf, "--dtype", "float32", "--input-ids",
              ",".join(map(str, prompt[:PREFIX_TOKENS])), "--out", path)
    return path


def _generate(run_mlxgp_json, model, ids, *flags, max_new=MAX_NEW):
    got = run_mlxgp_json("generate", "--model", model, "--dtype", "float32", "--input-ids", ",".join(map(str, ids)),
                         "--max-new-tokens", max_new, "--ignore-eos", *flags)
    return got["sequences"][0]["token_ids"]


def test_prompt_cache_equals_plain_and_transformers(prompt, saved, hf_default, default_gguf, run_mlxgp_json):
    model, _ = hf_default
    # mlxgp runs in a background thread while transformers generates (as test_generate_parity does).
    with ThreadPoolExecutor(max_workers=1) as pool:
        runs = [pool.submit(_generate, run_mlxgp_json, default_gguf, prompt, *flags)
                for flags in ([], ["--prompt-cache", saved])]
        ref = reference_greedy(model, prompt, max_new=MAX_NEW, ignore_eos=True)
        plain, cached = [r.result() for r in runs]
    same_plain = next((k for k in range(MAX_NEW) if cached[k] != plain[k]), MAX_NEW)
    same_ref = next((k for k in range(MAX_NEW) if cached[k] != ref[k]), MAX_NEW)
    print(f"prompt cache ({PREFIX_TOKENS} of {len(prompt)} prompt tokens cached): {same_plain}/{MAX_NEW} tokens "
          f"identical to generation without it, {same_ref}/{MAX_NEW} identical to transformers greedy")
    assert cached == plain
    if same_ref < MAX_NEW:
        assert reference_top2_gap(model, prompt + ref[:same_ref]) < NEAR_TIE


def test_prompt_equal_to_cached_tokens(prompt, saved, default_gguf, run_mlxgp_json):
    """The whole prompt is cached: its last position is recomputed for the first token's logits."""
    ids = prompt[:PREFIX_TOKENS]
    assert _generate(run_mlxgp_json, default_gguf, ids, "--prompt-cache", saved, max_new=8) == \
        _generate(run_mlxgp_json, default_gguf, ids, max_new=8)


def test_prompt_cache_with_sampling_rows(prompt, saved, default_gguf, run_mlxgp_json):
    """Several sampled sequences from one cached prefix: the same draws as without the cache."""
    flags = ["--do-sample", "--seed", "3", "--num-return-sequences", "2", "--max-new-tokens", "8"]
    runs = [run_mlxgp_json("generate", "--model", default_gguf, "--dtype", "float32", "--input-ids",
                           ",".join(map(str, prompt)), *flags, *extra) for extra in ([], ["--prompt-cache", saved])]
    assert [s["token_ids"] for s in runs[0]["sequences"]] == [s["token_ids"] for s in runs[1]["sequences"]]


def test_prompt_cache_with_kv_bits(prompt, saved, default_gguf, run_mlxgp, run_mlxgp_json):
    """kv_bits quantizes the caches as a generation goes: the saved standard positions serve a run that starts
    quantizing at or after their end (the tokens of the run without the cache), and are refused where that
    run would have quantized them."""
    for start in (PREFIX_TOKENS, PREFIX_TOKENS + 6):
        flags = ["--kv-bits", "8", "--quantized-kv-start", start]
        assert _generate(run_mlxgp_json, default_gguf, prompt, *flags, "--prompt-cache", saved, max_new=12) == \
            _generate(run_mlxgp_json, default_gguf, prompt, *flags, max_new=12)
    ids = ",".join(map(str, prompt))
    for flags in (["--kv-bits", 8], ["--kv-bits", 4, "--quantized-kv-start", PREFIX_TOKENS - 1]):
        assert _error(run_mlxgp, "generate", "--model", default_gguf, "--dtype", "float32", "--input-ids", ids,
                      "--max-new-tokens", 4, "--prompt-cache", saved, *flags)[1] == \
            f"[prompt-cache] the prompt cache holds {PREFIX_TOKENS} standard positions; with kv_bits, " \
            "quantized_kv_start must be at least that many (a generation would have quantized them)"


def _error(run_mlxgp, *args):
    proc = run_mlxgp(*args, check=False, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode in (1, 2) and len(lines) == 1, (proc.returncode, proc.stderr)
    return proc.returncode, lines[0]


def test_prompt_cache_errors(prompt, saved, default_gguf, run_mlxgp, tmp_path):
    ids = ",".join(map(str, prompt))
    gen = ["generate", "--model", default_gguf, "--dtype", "float32", "--max-new-tokens", 2]
    # A prompt that does not begin with the cached tokens.
    other = ",".join(map(str, [prompt[0] + 1] + prompt[1:]))
    assert _error(run_mlxgp, *gen, "--input-ids", other, "--prompt-cache", saved) == \
        (2, "[prompt-cache] the prompt does not start with the cached tokens (first difference at token 0)")
    code, msg = _error(run_mlxgp, *gen, "--input-ids", ",".join(map(str, prompt[:5])), "--prompt-cache", saved)
    assert msg == f"[prompt-cache] the prompt has 5 tokens, fewer than the {PREFIX_TOKENS} cached tokens"
    # Another dtype of the same checkpoint holds other keys/values.
    code, msg = _error(run_mlxgp, "generate", "--model", default_gguf, "--dtype", "bfloat16", "--input-ids", ids,
                       "--prompt-cache", saved)
    assert msg.startswith("[prompt-cache]") and "was made by another model" in msg, msg
    # A truncated file.
    data = Path(saved).read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    code, msg = _error(run_mlxgp, *gen, "--input-ids", ids, "--prompt-cache", cut)
    assert msg.startswith("[safetensors]") and "cut.safetensors" in msg, msg
    # Garbage, a missing file, and a safetensors file that is not a prompt cache.
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    assert _error(run_mlxgp, *gen, "--input-ids", ids, "--prompt-cache", junk)[1].startswith("[safetensors]")
    assert _error(run_mlxgp, *gen, "--input-ids", ids, "--prompt-cache", tmp_path / "none")[1] == \
        f"[load] cannot read {tmp_path / 'none'}"
    logits = tmp_path / "logits.safetensors"
    run_mlxgp("logits", "--model", default_gguf, "--input-ids", "1,2,3", "--out", logits)
    assert _error(run_mlxgp, *gen, "--input-ids", ids, "--prompt-cache", logits)[1] == \
        f"[prompt-cache] '{logits}' is not an mlxgp prompt cache (no format metadata)"
    # A rotating cache cannot start from a standard one.
    assert _error(run_mlxgp, *gen, "--input-ids", ids, "--prompt-cache", saved, "--max-kv-size", 64)[1] == \
        "[prompt-cache] a prompt cache cannot be combined with max_kv_size (it holds a standard cache)"


def test_prompt_cache_of_another_model(saved, default_gguf, run_mlxgp, tmp_path):
    """A cache made by a tiny llama, used with the default model, and the other way round."""
    _, folder = tiny_models.make_tiny_model("llama", tmp_path / "tiny")
    tiny_cache = tmp_path / "tiny.safetensors"
    run_mlxgp("cache-prompt", "--model", folder, "--input-ids", "5,6,7", "--out", tiny_cache)
    code, msg = _error(run_mlxgp, "generate", "--model", default_gguf, "--input-ids", "5,6,7,8", "--prompt-cache",
                       tiny_cache)
    assert code == 2 and msg.startswith(f"[prompt-cache] '{tiny_cache}' was made by another model (llama layers=3"), msg
    code, msg = _error(run_mlxgp, "generate", "--model", folder, "--input-ids", "5,6,7,8", "--prompt-cache", saved)
    assert code == 2 and "was made by another model" in msg, msg
    # The same architecture with other weights (seed 1) is another model too.
    _, other = tiny_models.make_tiny_model("llama", tmp_path / "tiny-other", seed=1)
    code, msg = _error(run_mlxgp, "generate", "--model", other, "--input-ids", "5,6,7,8", "--prompt-cache", tiny_cache)
    assert "was made by another model" in msg, msg
    # Quantizing leaves the architecture and the norms as they were: still another model.
    quantized = tmp_path / "tiny-q4"
    run_mlxgp("convert", "--hf-path", folder, "--mlx-path", quantized, "--quantize")
    code, msg = _error(run_mlxgp, "generate", "--model", quantized, "--input-ids", "5,6,7,8", "--prompt-cache",
                       tiny_cache)
    assert "was made by another model" in msg, msg
    # The same weights under another rotary base or scaling (config.json edited, as a user switching on a
    # rope_scaling does): transformers computes other keys there, so the cache is refused, not reused.
    for i, edit in enumerate(({"rope_theta": 500.0}, {"rope_type": "linear", "factor": 2.0})):
        edited = tmp_path / f"tiny-rope-{i}"
        shutil.copytree(folder, edited)
        config = json.loads((edited / "config.json").read_text())
        config["rope_parameters"] = {**config["rope_parameters"], **edit}
        (edited / "config.json").write_text(json.dumps(config))
        code, msg = _error(run_mlxgp, "generate", "--model", edited, "--input-ids", "5,6,7,8", "--prompt-cache",
                           tiny_cache)
        assert code == 2 and msg == (f"[prompt-cache] '{tiny_cache}' was made by these weights under other "
                                     "config.json settings (rotary embedding, norms, attention or experts); make "
                                     "it again with this config"), msg
    # Its own model accepts it.
    run_mlxgp("generate", "--model", folder, "--input-ids", "5,6,7,8", "--max-new-tokens", 2, "--prompt-cache",
              tiny_cache)


def test_cache_prompt_errors(default_gguf, run_mlxgp, tmp_path):
    base = ["cache-prompt", "--model", default_gguf]
    assert _error(run_mlxgp, *base, "--out", tmp_path / "x.safetensors")[1] == \
        "[cli] pass exactly one of --prompt and --input-ids"
    assert _error(run_mlxgp, *base, "--input-ids", "1,2", "--out", tmp_path / "no" / "x.safetensors")[1] == \
        f"[cli] --out: directory '{tmp_path / 'no'}' does not exist"
    assert _error(run_mlxgp, *base, "--input-ids", "1,99999999", "--out", tmp_path / "x.safetensors")[1] == \
        "[prompt-cache] token id 99999999 is outside the vocabulary (size 49152)"
    assert not (tmp_path / "x.safetensors").exists()
