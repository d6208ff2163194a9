"""kv_cache_dtype (vLLM's name; llama.cpp's --cache-type-k/-v, whose default is float16): the standard KV cache
stores keys and values rounded to float16 or bfloat16, and attention reads the rounded values.

The reference is transformers itself on the same fp32 weights and ids, with its DynamicCache's layers
rounding what they store (key_states.half().float(): torch rounds to nearest even, as MLX's astype does),
prefilled in the same chunks then decoding one id at a time, as `mlxgp logits --prefill P --prefill-chunk C`
runs. Each comparison also checks that the rounding shows: transformers' plain float32 cache is further
from the rounded reference than mlxgp is. Tiny models: on SmolLM2, whose keys reach magnitudes where a
float16 ulp is 1/16, last-bit differences upstream flip so many roundings that its logits differ from
transformers' rounded ones nearly as much as the rounding itself moves them (1.5e-2 against 1.7e-2,
measured), so the default GGUF is held to its solo runs in a batch instead. Covered paths: the tiny fp32
folder (op-by-op layers, the CPU decode-attention kernel reading halves), tiny GGUFs (the fused decode step
writing halves), the default GGUF batched against each prompt alone, and the refusals."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402
from cpu_features import needs_vnni  # noqa: E402
from test_logits_parity import _mlxgp_logits  # noqa: E402


def _ids(n, vocab, seed):
    return np.random.default_rng(seed).integers(3, vocab, size=n).tolist()


def _hf_logits(model, ids, prefill, chunk, dtype):
    """transformers' logits of `ids`: prefill[:prefill] in chunks, then one id per call; the cache's layers
    store keys and values rounded to `dtype` (None: float32, transformers' own)."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    if dtype is not None:
        for layer in cache.layers:
            store = layer.update
            layer.update = (lambda store: lambda k, v, *a, **kw: store(k.to(dtype).float(), v.to(dtype).float(),
                                                                        *a, **kw))(store)
    out = []
    with torch.no_grad():
        pieces = [ids[i:min(i + chunk, prefill)] for i in range(0, prefill, chunk)] + [[t] for t in ids[prefill:]]
        for piece in pieces:
            out.append(model(torch.tensor([piece]), past_key_values=cache, use_cache=True).logits[0].float().numpy())
    return np.concatenate(out)


def _check(label, got, rounded, plain, tol):
    ours = float(np.abs(got - rounded).max())
    effect = float(np.abs(plain - rounded).max())
    print(f"{label}: max |mlxgp - transformers, rounded cache| {ours:.3e}; the rounding moves transformers' "
          f"logits by {effect:.3e}")
    assert ours <= tol
    assert effect > 5 * ours  # the option is honoured: a float32 cache would be visibly further away


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return tiny_models.make_tiny_model("llama-plain", tmp_path_factory.mktemp("llama-kvdtype"))


# Rounding tolerance: a key or value within an ulp of a rounding boundary may round the other way than in
# transformers after a last-bit difference upstream (float16 ulp 2^-11 of the value, bfloat16 2^-8).
TOLERANCE = {"float16": 1e-4, "bfloat16": 1e-3}


@pytest.mark.parametrize("weights", ["fp32 folder", "Q8_0", "Q4_0"])
@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_tiny_rounded_cache_vs_transformers(name, weights, tiny_llama, run_mlxgp, tmp_path):
    """The fp32 folder runs layer by layer (the CPU decode-attention kernel reads the halves); the GGUF
    files keep their blocks, so each decode step is the fused node that writes the new halves itself."""
    import torch
    import transformers

    model, folder = tiny_llama
    extra = ["--dtype", "float32"]
    if weights != "fp32 folder":
        folder = tiny_models.write_tiny_gguf(model, tmp_path / f"tiny-{weights}.gguf", weights)
        model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=folder.name,
                                                                  dtype=torch.float32).eval()
        extra = []
    ids = _ids(48, model.config.vocab_size, seed=5)
    prefill, chunk = 32, 12
    rounded = _hf_logits(model, ids, prefill, chunk, getattr(torch, name))
    plain = _hf_logits(model, ids, prefill, chunk, None)
    got = _mlxgp_logits(run_mlxgp, folder, ids, tmp_path / "l.safetensors", *extra, "--prefill", prefill,
                        "--prefill-chunk", chunk, "--kv-cache-dtype", name)
    assert got.shape == rounded.shape
    _check(f"tiny llama {weights}, {name} cache", got, rounded, plain, TOLERANCE[name])


@pytest.mark.parametrize("extra", [(), pytest.param(("--int8-activations",), marks=needs_vnni)])
def test_batch_rows_equal_solo_runs(extra, default_gguf, run_mlxgp, run_mlxgp_json, tmp_path):
    """Prompts of different lengths decoded together (left padding, the fused step writing halves into the
    shared cache's rows) give each prompt's solo tokens; and the option changes what a generation does."""
    prompts = ["Hello", "The history of the printing press begins in the fifteenth century, when",
               "List three colours:", "def fibonacci(n):\n    ", "Once upon a time"]
    f = tmp_path / "requests.jsonl"
    f.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    common = ("--model", default_gguf, "--max-new-tokens", 40, "--ignore-eos", *extra)
    out = run_mlxgp("generate", "--prompts-file", f, "--batch-size", 5, "--kv-cache-dtype", "float16", "--json",
                    *common).stdout
    batch = [json.loads(line)["sequences"][0]["token_ids"] for line in out.splitlines() if line.strip()]
    solo = [run_mlxgp_json("generate", "--prompt", p, "--kv-cache-dtype", "float16", *common)["sequences"][0]["token_ids"]
            for p in prompts]
    assert batch == solo
    assert all(len(t) == 40 for t in solo)


@pytest.mark.parametrize("flags,msg", [
    (("--kv-cache-dtype", "float8"), "[config] field 'kv_cache_dtype' must be float16, bfloat16 or float32"),
    (("--kv-cache-dtype", "float16", "--kv-bits", "8"), "cannot be combined with kv_bits"),
    (("--kv-cache-dtype", "float16", "--max-kv-size", "64"), "cannot be combined with max_kv_size"),
])
def test_refusals(flags, msg, default_gguf, run_mlxgp):
    proc = run_mlxgp("generate", "--model", default_gguf, "--prompt", "Hi", "--max-new-tokens", 2, *flags,
                     check=False)
    assert proc.returncode != 0 and msg in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_logits_refusal(default_gguf, run_mlxgp, tmp_path):
    proc = run_mlxgp("logits", "--model", default_gguf, "--input-ids", "1,2,3", "--kv-cache-dtype", "half",
                     "--out", tmp_path / "l.safetensors", check=False)
    assert proc.returncode != 0 and "[cache] kv_cache_dtype must be float16, bfloat16 or float32" in proc.stderr


def test_prompt_cache_of_another_dtype_is_refused(default_gguf, run_mlxgp, tmp_path):
    saved = tmp_path / "p.safetensors"
    run_mlxgp("cache-prompt", "--model", default_gguf, "--prompt", "You are a helpful assistant.", "--out", saved)
    proc = run_mlxgp("generate", "--model", default_gguf, "--prompt-cache", saved, "--prompt",
                     "You are a helpful assistant. Hi", "--max-new-tokens", 2, "--kv-cache-dtype", "float16",
                     check=False)
    assert proc.returncode != 0 and "[prompt-cache]" in proc.stderr and "kv_cache_dtype float16" in proc.stderr
