"""Rotating and quantized KV caches against mlx-lm 0.32, run live on the same weights and ids.

mlx-lm runs a prompt the way generate_step prefills it (prompt[:-1] in chunks of prefill_step_size,
then the last prompt token alone, then one token per step) with RotatingKVCache(max_size, keep) or
QuantizedKVCache(group_size, bits) (directly, or through maybe_quantize_kv_cache with
quantized_kv_start); `mlxgp logits` runs the same ids with --prefill P-1 --prefill-chunk C and the
matching cache flags. The logits of every position are compared. One test drives mlx-lm's own
generate_step and checks mlxgp's log-probabilities and greedy tokens along its output."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _ids(n, vocab, seed):
    return np.random.default_rng(seed).integers(3, vocab, size=n).tolist()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A tiny random llama with head_dim 64 (KV quantization groups are 32/64/128 wide) and GQA,
    saved in the legacy rope layout that mlx-lm 0.32 reads. Returns (folder, mlx-lm model)."""
    import torch
    import transformers
    from mlx_lm.utils import load_model

    torch.manual_seed(0)
    common = dict(tiny_models._COMMON, hidden_size=256, num_attention_heads=4, num_key_value_heads=2)
    cfg = transformers.LlamaConfig(**common, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.08)
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
    folder = tmp_path_factory.mktemp("tiny-llama-d64")
    model.save_pretrained(folder)
    tiny_models.legacy_rope_config(folder)
    ref, _ = load_model(folder)
    return folder, ref


@pytest.fixture(scope="module")
def default_hf_folder():
    """The default model as an fp32 HF folder mlx-lm loads (built by bench/prepare_models.py)."""
    folder = ROOT / ".cache" / "models" / "smollm2-135m-hf-f32"
    if not (folder / ".bench-recipe").is_file():
        subprocess.run([sys.executable, str(ROOT / "bench" / "prepare_models.py")], check=True, timeout=1200)
    assert json.loads((folder / "config.json").read_text()).get("rope_theta"), "mlx-lm needs rope_theta"
    from mlx_lm.utils import load_model

    ref, _ = load_model(folder)
    return folder, ref


def _mlx_lm_cache(ref, kind, **kw):
    from mlx_lm.models import cache as C

    n = len(ref.layers)
    if kind == "rotating":
        return [C.RotatingKVCache(max_size=kw["max_kv_size"], keep=kw.get("keep", 4)) for _ in range(n)]
    if kind == "quantized":
        return [C.QuantizedKVCache(group_size=kw["group_size"], bits=kw["bits"]) for _ in range(n)]
    return [C.KVCache() for _ in range(n)]  # "start": quantized later by maybe_quantize_kv_cache


def _mlx_lm_logits(ref, ids, prefill, chunk, kind, **kw):
    """generate_step's call pattern: chunks of `chunk` over ids[:prefill], then single tokens."""
    import mlx.core as mx
    from mlx_lm.generate import maybe_quantize_kv_cache

    cache = _mlx_lm_cache(ref, kind, **kw)
    calls = [(i, min(i + chunk, prefill)) for i in range(0, prefill, chunk)]
    calls += [(i, i + 1) for i in range(prefill, len(ids))]
    out = []
    for a, b in calls:
        logits = ref(mx.array([ids[a:b]]), cache=cache)
        if kind == "start":
            maybe_quantize_kv_cache(cache, kw["start"], kw["group_size"], kw["bits"])
        mx.eval(logits)
        out.append(np.array(logits[0].astype(mx.float32)))
    return np.concatenate(out, 0)


def _mlxgp_logits(run_mlxgp, folder, ids, out, prefill, chunk, kind, **kw):
    flags = ["--prefill", prefill, "--prefill-chunk", chunk]
    if kind == "rotating":
        flags += ["--max-kv-size", kw["max_kv_size"], "--kv-keep", kw.get("keep", 4)]
    else:
        flags += ["--kv-bits", kw["bits"], "--kv-group-size", kw["group_size"]]
        if kind == "start":
            flags += ["--quantized-kv-start", kw["start"]]
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out,
              "--dtype", "float32", *flags)
    from safetensors.numpy import load_file

    return load_file(str(out))["logits"]


def _compare(label, got, ref, tol, median_tol=None):
    assert got.shape == ref.shape, (got.shape, ref.shape)
    rows = np.abs(got - ref).max(-1)
    diff, median = float(rows.max()), float(np.median(rows))
    print(f"{label}: max |diff| = {diff:.3e}, median over positions {median:.3e} ({got.shape[0]} positions, "
          f"logit range {np.abs(ref).max():.1f})")
    assert np.abs(ref).max() > 0.5  # not a degenerate reference
    assert diff <= tol, diff
    if median_tol is not None:
        assert median <= median_tol, median
    return diff


# (prompt length, decoded tokens, chunk, max_kv_size, keep): chunks longer and shorter than the
# window, a prompt shorter than the window whose decode wraps the ring, keep 0 and 4.
ROTATING = [(60, 24, 8, 16, 4), (10, 40, 4, 32, 4), (50, 30, 64, 20, 0), (40, 20, 13, 13, 4)]


@pytest.mark.parametrize("prompt,decode,chunk,max_kv,keep", ROTATING)
def test_tiny_rotating_vs_mlx_lm(prompt, decode, chunk, max_kv, keep, tiny_llama, run_mlxgp, tmp_path):
    folder, ref = tiny_llama
    ids = _ids(prompt + decode, 512, seed=prompt + max_kv)
    kw = dict(max_kv_size=max_kv, keep=keep)
    r = _mlx_lm_logits(ref, ids, prompt - 1, chunk, "rotating", **kw)
    g = _mlxgp_logits(run_mlxgp, folder, ids, tmp_path / "l.safetensors", prompt - 1, chunk, "rotating", **kw)
    _compare(f"tiny rotating max={max_kv} keep={keep} chunk={chunk}", g, r, 1e-4)


def _perturbed(folder, scale=1e-6, seed=0):
    """mlx-lm's model of `folder` with every weight moved by ~`scale` relative: how far mlx-lm moves from
    itself when keys and values change by float rounding."""
    import mlx.core as mx
    from mlx.utils import tree_map
    from mlx_lm.utils import load_model

    model, _ = load_model(folder)
    key = mx.random.key(seed)
    model.update(tree_map(lambda w: w * (1 + scale * mx.random.normal(w.shape, key=key)), model.parameters()))
    return model


@pytest.fixture(scope="module")
def tiny_perturbed(tiny_llama):
    return _perturbed(tiny_llama[0])


@pytest.mark.parametrize("bits,group", [(4, 64), (8, 64), (4, 32)])
@pytest.mark.parametrize("kind", ["quantized", "start"])
def test_tiny_quantized_vs_mlx_lm(bits, group, kind, tiny_llama, tiny_perturbed, run_mlxgp, tmp_path):
    folder, ref = tiny_llama
    ids = _ids(48, 512, seed=bits + group)
    kw = dict(bits=bits, group_size=group, start=20)
    r = _mlx_lm_logits(ref, ids, 31, 12, kind, **kw)
    g = _mlxgp_logits(run_mlxgp, folder, ids, tmp_path / "l.safetensors", 31, 12, kind, **kw)
    # Keys/values that differ from mlx-lm's by float rounding (~1e-7) can land on the other side of a
    # quantization step; a step flipped early moves every later position (seen at 8 bits). So the
    # bound is fp32 noise, or how far mlx-lm moves from itself under a 1e-6 weight perturbation.
    noise = np.abs(_mlx_lm_logits(tiny_perturbed, ids, 31, 12, kind, **kw) - r).max(-1)
    rows = np.abs(g - r).max(-1)
    print(f"tiny quantized-kv {kind} bits={bits} group={group}: max |diff| = {rows.max():.3e}, median "
          f"{np.median(rows):.3e}; mlx-lm vs its perturbed self: max {noise.max():.3e}, median {np.median(noise):.3e}")
    assert np.abs(r).max() > 0.5  # not a degenerate reference
    assert rows.max() <= max(5e-3, 3 * noise.max()), rows.max()
    assert np.median(rows) <= max(1e-4, 3 * np.median(noise)), np.median(rows)


def test_default_rotating_generate_step(default_hf_folder, run_mlxgp, tmp_path):
    """mlx-lm's own generate_step (greedy, RotatingKVCache, prefill_step_size) on the default model:
    mlxgp's log-probabilities along its output match, and so do the greedy tokens."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from transformers import AutoTokenizer

    folder, ref = default_hf_folder
    tok = AutoTokenizer.from_pretrained(folder)
    prompt = tok.encode("The history of the printing press begins in the fifteenth century, when " * 8)
    max_kv, chunk, decode = 48, 32, 40
    assert len(prompt) > max_kv + chunk
    # mlx-lm 0.32.2's llama defines make_cache(), which make_prompt_cache prefers, so generate_step's
    # max_kv_size is silently ignored for llama models; pass the rotating cache explicitly.
    cache = _mlx_lm_cache(ref, "rotating", max_kv_size=max_kv)
    steps = list(generate_step(mx.array(prompt), ref, max_tokens=decode, prompt_cache=cache,
                               prefill_step_size=chunk))
    tokens = [int(t) for t, _ in steps]
    ref_lp = np.stack([np.array(lp.astype(mx.float32)) for _, lp in steps])
    ids = prompt + tokens[:-1]
    got = _mlxgp_logits(run_mlxgp, folder, ids, tmp_path / "l.safetensors", len(prompt) - 1, chunk, "rotating",
                        max_kv_size=max_kv)
    got = got[len(prompt) - 1:]  # the last prompt token onwards: one row per generated token
    m = got.max(-1, keepdims=True)
    got_lp = got - m - np.log(np.exp(got - m).sum(-1, keepdims=True))
    _compare("SmolLM2 fp32 rotating (generate_step) log-probs", got_lp, ref_lp, 1e-3)
    assert got.argmax(-1).tolist() == tokens


def test_default_rotating_vs_mlx_lm(default_hf_folder, run_mlxgp, tmp_path):
    folder, ref = default_hf_folder
    ids = _ids(120, 49152, seed=11)
    kw = dict(max_kv_size=64, keep=4)
    r = _mlx_lm_logits(ref, ids, 99, 40, "rotating", **kw)
    g = _mlxgp_logits(run_mlxgp, folder, ids, tmp_path / "l.safetensors", 99, 40, "rotating", **kw)
    _compare("SmolLM2 fp32 rotating max=64 keep=4 chunk=40", g, r, 1e-3)


@pytest.fixture(scope="module")
def default_perturbed(default_hf_folder):
    """mlx-lm's default model with every weight scaled by (1 + 1e-6 * N(0, 1)): a float-rounding-
    sized change, to measure how sensitive mlx-lm's own quantized-KV logits are."""
    import mlx.core as mx
    from mlx.utils import tree_map
    from mlx_lm.utils import load_model

    model, _ = load_model(default_hf_folder[0])
    key = mx.random.key(0)
    model.update(tree_map(lambda w: w * (1 + 1e-6 * mx.random.normal(w.shape, key=key)), model.parameters()))
    return model


@pytest.mark.parametrize("kind,bits", [("quantized", 4), ("start", 8)])  # 8-bit direct: tiny tests
def test_default_quantized_vs_mlx_lm(kind, bits, default_hf_folder, default_perturbed, run_mlxgp, tmp_path):
    """On SmolLM2, quantized-KV logits are chaotic: SmolLM2's keys have large outlier channels, so a
    float-rounding difference that flips one quantization step moves logits by O(1) in mlx-lm
    itself (measured: a 1e-6 relative weight perturbation changes mlx-lm's own 4-bit logits by up to
    ~4). So mlxgp must be as close to mlx-lm as mlx-lm is to itself under that perturbation; the
    positions before quantized_kv_start (standard cache) must match to fp32 noise."""
    folder, ref = default_hf_folder
    ids = _ids(120, 49152, seed=11)
    kw = dict(bits=bits, group_size=64, start=50)
    r = _mlx_lm_logits(ref, ids, 99, 40, kind, **kw)
    noise = np.abs(_mlx_lm_logits(default_perturbed, ids, 99, 40, kind, **kw) - r).max(-1)
    g = _mlxgp_logits(run_mlxgp, folder, ids, tmp_path / "l.safetensors", 99, 40, kind, **kw)
    rows = np.abs(g - r).max(-1)
    print(f"SmolLM2 fp32 kv {kind} bits={bits}: max |diff| = {rows.max():.3e} (median {np.median(rows):.3e}); "
          f"mlx-lm vs its 1e-6-perturbed self: max {noise.max():.3e} (median {np.median(noise):.3e})")
    assert noise.max() > 0  # the perturbation is real
    assert rows.max() <= 3 * noise.max() + 1e-3
    assert np.median(rows) <= 3 * np.median(noise) + 1e-3
    if kind == "start":  # the first chunk (40 ids) runs on a standard cache, quantized only after it
        assert rows[:40].max() <= 1e-3, rows[:40].max()


@pytest.mark.parametrize("flags,msg", [
    (["--max-kv-size", "0"], "[cache] max_kv_size must be at least 1"),
    (["--max-kv-size", "8", "--kv-keep", "8"], "[cache] kv keep must be in [0, max_kv_size)"),
    (["--kv-bits", "7"], "[cache] kv bits must be 2, 3, 4, 5, 6 or 8 (got 7)"),
    (["--kv-bits", "4", "--kv-group-size", "16"], "[cache] kv group size must be 32, 64 or 128 (got 16)"),
    (["--max-kv-size", "8", "--kv-bits", "4"], "[cache] max_kv_size and kv_bits cannot be combined"),
    (["--kv-keep", "2"], "[cli] --kv-keep needs --max-kv-size"),
    (["--quantized-kv-start", "2"], "[cache] quantized_kv_start needs kv_bits"),
    (["--prefill-chunk", "0"], "[cli] --prefill-chunk must be at least 1"),
])
def test_cache_flag_errors(flags, msg, run_mlxgp, tmp_path):
    proc = run_mlxgp("logits", "--model", tmp_path / "unused", "--input-ids", "1,2,3", "--out",
                     tmp_path / "x.safetensors", *flags, check=False, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(msg), proc.stderr


def test_quantized_head_dim_error(run_mlxgp, tmp_path):
    """tiny qwen2 has head_dim 16: no supported group fits, which is a clear error, not a crash."""
    _, folder = tiny_models.make_tiny_model("qwen2", tmp_path / "q")
    proc = run_mlxgp("logits", "--model", folder, "--input-ids", "1,2,3", "--out", tmp_path / "x.safetensors",
                     "--kv-bits", "4", "--kv-group-size", "32", check=False, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.strip() == "[cache] head_dim 16 is not a multiple of kv group size 32", proc.stderr


def _mlx_lm_greedy(ref, prompt, max_new, kind=None, chunk=None, with_logprobs=False, **kw):
    """mlx-lm 0.32's own generate_step, greedy: the tokens. kind "rotating" / "quantized" pass the cache
    explicitly (generate_step's max_kv_size is ignored for llama, see above); "start" passes kv_bits and
    quantized_kv_start to generate_step, which quantizes its standard cache after each model call."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    args = dict(max_tokens=max_new)
    if chunk is not None:
        args["prefill_step_size"] = chunk
    if kind in ("rotating", "quantized"):
        args["prompt_cache"] = _mlx_lm_cache(ref, kind, **kw)
    elif kind == "start":
        args.update(kv_bits=kw["bits"], kv_group_size=kw["group_size"], quantized_kv_start=kw["start"])
    steps = [(int(t), lp) for t, lp in generate_step(mx.array(prompt), ref, **args)]
    tokens = [t for t, _ in steps]
    return (tokens, [lp for _, lp in steps]) if with_logprobs else tokens


def _mlxgp_greedy(run_mlxgp_json, folder, prompt, max_new, kind=None, chunk=None, **kw):
    flags = [] if chunk is None else ["--prefill-chunk-size", chunk]
    if kind == "rotating":
        flags += ["--max-kv-size", kw["max_kv_size"], "--kv-keep", kw.get("keep", 4)]
    elif kind in ("quantized", "start"):
        flags += ["--kv-bits", kw["bits"], "--kv-group-size", kw["group_size"]]
        if kind == "start":
            flags += ["--quantized-kv-start", kw["start"]]
    got = run_mlxgp_json("generate", "--model", folder, "--input-ids", ",".join(map(str, prompt)), "--max-new-tokens",
                         max_new, "--ignore-eos", *flags)
    return got["sequences"][0]["token_ids"]


def _same_prefix(a, b):
    return next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))


# (prompt, new tokens, prefill chunk or None for both defaults (mlx-lm 2048), cache kind, cache settings)
TINY_GENERATE = [
    (60, 30, 8, "rotating", dict(max_kv_size=16, keep=4)),
    (50, 30, None, "rotating", dict(max_kv_size=20, keep=0)),
    (10, 50, 4, "rotating", dict(max_kv_size=32, keep=4)),
    (40, 20, 12, "quantized", dict(bits=4, group_size=64)),
    (40, 20, 12, "start", dict(bits=8, group_size=32, start=20)),
]


@pytest.mark.parametrize("prompt,new,chunk,kind,kw", TINY_GENERATE)
def test_tiny_generate_vs_mlx_lm(prompt, new, chunk, kind, kw, tiny_llama, run_mlxgp_json):
    """`mlxgp generate` with a rotating / quantized KV cache: mlx-lm's generate_step's greedy tokens."""
    folder, ref = tiny_llama
    ids = _ids(prompt, 512, seed=prompt + new)
    want = _mlx_lm_greedy(ref, ids, new, kind, chunk, **kw)
    got = _mlxgp_greedy(run_mlxgp_json, folder, ids, new, kind, chunk, **kw)
    print(f"tiny generate {kind} {kw} chunk={chunk}: {_same_prefix(got, want)}/{new} tokens identical to mlx-lm")
    assert got == want


def test_rotating_cache_generates_past_the_context_like_mlx_lm(tiny_llama, run_mlxgp_json, tmp_path):
    """A rotating cache holds a window, so generation goes on past max_position_embeddings with positions
    still counting, as mlx-lm's generate_step does with max_kv_size (which never reads that field). The
    same model with a 48-position context: 60 new tokens after a 20-token prompt, against mlx-lm; without
    a rotating cache the budget stops at the context (28 tokens, finish_reason length)."""
    import shutil

    folder, ref = tiny_llama
    short = tmp_path / "short-context"
    shutil.copytree(folder, short)
    cfg = json.loads((short / "config.json").read_text())
    cfg["max_position_embeddings"] = 48
    (short / "config.json").write_text(json.dumps(cfg))
    ids = _ids(20, 512, seed=7)
    kw = dict(max_kv_size=16, keep=4)
    want = _mlx_lm_greedy(ref, ids, 60, "rotating", **kw)
    got = _mlxgp_greedy(run_mlxgp_json, short, ids, 60, "rotating", **kw)
    print(f"rotating past a 48-token context: {_same_prefix(got, want)}/60 tokens identical to mlx-lm")
    assert got == want
    plain = run_mlxgp_json("generate", "--model", short, "--input-ids", ",".join(map(str, ids)), "--max-new-tokens",
                           60, "--ignore-eos")["sequences"][0]
    assert len(plain["token_ids"]) == 28 and plain["finish_reason"] == "length"


def test_default_rotating_generate_vs_mlx_lm(default_hf_folder, run_mlxgp_json):
    """The default model (fp32 HF folder), a prompt 3x longer than max_kv_size, default prefill steps
    (one chunk of prompt[:-1], then the last token), 48 greedy tokens that keep wrapping the ring."""
    from transformers import AutoTokenizer

    folder, ref = default_hf_folder
    prompt = AutoTokenizer.from_pretrained(folder).encode(
        "The history of the printing press begins in the fifteenth century, when " * 6)
    kw = dict(max_kv_size=24, keep=4)
    assert len(prompt) > 3 * kw["max_kv_size"]
    want = _mlx_lm_greedy(ref, prompt, 48, "rotating", **kw)
    got = _mlxgp_greedy(run_mlxgp_json, folder, prompt, 48, "rotating", **kw)
    print(f"SmolLM2 fp32 generate rotating max_kv_size=24: {_same_prefix(got, want)}/48 tokens identical to mlx-lm")
    assert got == want


def test_default_quantized_generate_vs_mlx_lm(default_hf_folder, run_mlxgp_json):
    """The default model with 8-bit KV quantization from position 16 (generate_step's kv_bits /
    quantized_kv_start), prefill in chunks of 16."""
    from transformers import AutoTokenizer

    folder, ref = default_hf_folder
    prompt = AutoTokenizer.from_pretrained(folder).encode("Once upon a time, in a small village by the sea, there lived")
    kw = dict(bits=8, group_size=64, start=16)
    want, logprobs = _mlx_lm_greedy(ref, prompt, 32, "start", 16, with_logprobs=True, **kw)
    got = _mlxgp_greedy(run_mlxgp_json, folder, prompt, 32, "start", 16, **kw)
    same = _same_prefix(got, want)
    print(f"SmolLM2 fp32 generate kv_bits=8 start=16: {same}/32 tokens identical to mlx-lm")
    if got != want:
        # Near-tie rule: 8-bit keys/values that differ by float rounding can flip a quantization step, which
        # moves logits by ~1e-2 (mlx-lm moves that much from itself, test_tiny_quantized_vs_mlx_lm). A
        # divergence is accepted only where mlx-lm's own log-probabilities of its token and ours are closer
        # than a few such steps. Since the tiled prefill attention (its own summation order) this prompt
        # parts at token 19, 617 against 28, where mlx-lm's own margin measured 0.0117 in most pytest
        # processes and 0.0230 in one: the reference moves by about 0.01 there by itself.
        lp = logprobs[same]
        margin = float(lp[want[same]] - lp[got[same]])
        print(f"  first divergence at token {same}: mlx-lm's margin between {want[same]} and {got[same]} = {margin:.4f}")
        assert margin <= 0.03, margin
