"""Logits parity: `mlxgp logits` (prefill + cached single-token decode steps) against the reference
run live on the same ids: transformers fp32 for tiny random models of each architecture and for the
default SmolLM2 GGUF, mlx-lm for an MLX-quantized folder. Also CLI bad-input handling."""
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

N_DECODE = 16


def _ids(n, vocab, seed):
    return np.random.default_rng(seed).integers(3, vocab, size=n).tolist()


def _mlxgp_logits(run_mlxgp, model, ids, out, *extra):
    run_mlxgp("logits", "--model", model, "--input-ids", ",".join(map(str, ids)), "--out", out, *extra)
    from safetensors.numpy import load_file

    return load_file(str(out))["logits"]


def _hf_logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    cache = {}

    def get(arch):
        if arch not in cache:
            cache[arch] = tiny_models.make_tiny_model(arch, tmp_path_factory.mktemp(arch))
        return cache[arch]

    return get


@pytest.mark.parametrize("arch", list(tiny_models.ARCHS) + ["llama-linear"])
def test_tiny_fp32_parity(arch, tiny_dir, run_mlxgp, tmp_path):
    model, folder = tiny_dir(arch)
    ids = _ids(40, model.config.vocab_size, seed=1)
    ref = _hf_logits(model, ids)
    got = _mlxgp_logits(run_mlxgp, folder, ids, tmp_path / "l.safetensors", "--dtype", "float32")
    assert got.shape == ref.shape == (len(ids), model.config.vocab_size)
    diff = float(np.abs(got - ref).max())
    print(f"{arch}: max |diff| = {diff:.3e} over {len(ids)} positions ({N_DECODE} cached decode steps)")
    assert np.abs(ref).max() > 0.5  # the reference is not degenerate
    assert diff <= 1e-4


def test_tiny_prefill_split_invariance(tiny_dir, run_mlxgp, tmp_path):
    """Chunked prefill on a non-empty cache (causal mask offset) must equal one-shot prefill."""
    model, folder = tiny_dir("qwen3")
    ids = _ids(24, model.config.vocab_size, seed=2)
    ref = _hf_logits(model, ids)
    for prefill in (1, 5, 24):
        got = _mlxgp_logits(run_mlxgp, folder, ids, tmp_path / f"p{prefill}.safetensors",
                            "--dtype", "float32", "--prefill", prefill)
        assert float(np.abs(got - ref).max()) <= 1e-4, prefill


def test_legacy_rope_config_parity(tiny_dir, run_mlxgp, tmp_path):
    """Pre-5.x config layout (top-level rope_theta + rope_scaling) gives the same logits."""
    model, src = tiny_dir("llama")
    folder = tmp_path / "legacy"
    shutil.copytree(src, folder)
    tiny_models.legacy_rope_config(folder)
    assert "rope_scaling" in json.loads((folder / "config.json").read_text())
    ids = _ids(40, model.config.vocab_size, seed=5)
    got = _mlxgp_logits(run_mlxgp, folder, ids, tmp_path / "l.safetensors", "--dtype", "float32")
    assert float(np.abs(got - _hf_logits(model, ids)).max()) <= 1e-4


@pytest.mark.parametrize("arch,qtype", [("llama-plain", q) for q in tiny_models.GGUF_TYPES] +
                         [("qwen2", "Q8_0")])  # transformers 5.24 cannot load tiny qwen3 GGUFs
def test_tiny_gguf_vs_transformers(arch, qtype, tiny_dir, run_mlxgp, tmp_path):
    """Each supported GGUF tensor type, loaded by transformers (dequantized to fp32) and by mlxgp."""
    import torch
    import transformers

    model, _ = tiny_dir(arch)
    path = tiny_models.write_tiny_gguf(model, tmp_path / f"tiny-{qtype}.gguf", qtype)
    ref_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name,
                                                                  dtype=torch.float32)
    ids = _ids(30, model.config.vocab_size, seed=6)
    ref = _hf_logits(ref_model.eval(), ids)
    got = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "l.safetensors", "--dtype", "float32")
    diff = float(np.abs(got - ref).max())
    print(f"tiny {arch} GGUF {qtype} fp32: max |diff| = {diff:.3e}")
    assert diff <= 1e-4
    if qtype.startswith("Q"):  # the default dtype keeps the blocks quantized: same weights
        got_q = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "q.safetensors")
        assert float(np.abs(got_q - ref).max()) <= 1e-3


def test_tiny_llama3_gguf_rope_freqs(tiny_dir, run_mlxgp, tmp_path):
    """Llama-3 rope scaling stored llama.cpp-style as rope_freqs divisors (tied embeddings, so no
    output.weight) must reproduce the transformers model it was converted from."""
    model, _ = tiny_dir("llama")
    path = tiny_models.write_tiny_gguf(model, tmp_path / "llama3.gguf", "F32")
    ids = _ids(40, model.config.vocab_size, seed=7)
    got = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "l.safetensors", "--dtype", "float32")
    diff = float(np.abs(got - _hf_logits(model, ids)).max())
    print(f"tiny llama3-scaled GGUF (rope_freqs) fp32: max |diff| = {diff:.3e}")
    assert diff <= 1e-4


def test_default_gguf_fp32_parity(hf_default, default_gguf, run_mlxgp, tmp_path):
    model, tok = hf_default
    ids = tok.encode("The quick brown fox jumps over the lazy dog. In the beginning there was")
    ids = ids + _ids(40 - len(ids), model.config.vocab_size, seed=3)
    ref = _hf_logits(model, ids)
    got = _mlxgp_logits(run_mlxgp, default_gguf, ids, tmp_path / "l.safetensors", "--dtype", "float32")
    diff = float(np.abs(got - ref).max())
    print(f"SmolLM2-135M Q4_1 GGUF fp32: max |diff| = {diff:.3e} (logit range {np.abs(ref).max():.1f})")
    assert diff <= 1e-3
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_default_gguf_quantized_close(hf_default, default_gguf, run_mlxgp, tmp_path):
    """Default dtype keeps the Q4_1 weights packed: same weights, so the argmax must agree."""
    model, tok = hf_default
    ids = tok.encode("Write a haiku about the sea. The waves")
    ref = _hf_logits(model, ids)
    got = _mlxgp_logits(run_mlxgp, default_gguf, ids, tmp_path / "q.safetensors")
    diff = float(np.abs(got - ref).max())
    print(f"SmolLM2 GGUF quantized default: max |diff| = {diff:.3e}")
    assert diff <= 1e-2
    assert (got.argmax(-1) == ref.argmax(-1)).all()


@pytest.mark.parametrize("dtype,group,bits,tol", [("float32", 32, 4, 1e-3), ("bfloat16", 64, 8, 1e-2)])
def test_mlx_quantized_folder_vs_mlx_lm(dtype, group, bits, tol, tiny_dir, run_mlxgp, tmp_path):
    import mlx.core as mx
    from mlx_lm.utils import load_model, quantize_model, save_config, save_model

    # mlx-lm 0.32 ignores transformers 5.x `rope_parameters`, so both sides read the legacy layout.
    _, src = tiny_dir("llama")
    folder = tmp_path / "legacy"
    shutil.copytree(src, folder)
    tiny_models.legacy_rope_config(folder)
    qdir = tmp_path / "q4"
    model, config = load_model(folder)
    model.set_dtype(getattr(mx, dtype))  # mlx-community checkpoints are usually bf16
    model, config = quantize_model(model, config, group_size=group, bits=bits)
    save_model(qdir, model)
    save_config(config, qdir / "config.json")
    assert "quantization" in json.loads((qdir / "config.json").read_text())

    ref_model, _ = load_model(qdir)  # mlx-lm's own loader on the folder we load
    ids = _ids(30, 512, seed=4)
    ref = np.array(ref_model(mx.array([ids]))[0].astype(mx.float32))
    got = _mlxgp_logits(run_mlxgp, qdir, ids, tmp_path / "l.safetensors")
    diff = float(np.abs(got - ref).max())
    print(f"MLX {bits}-bit g{group} {dtype} quantized tiny llama vs mlx-lm: max |diff| = {diff:.3e} "
          f"(logit range {np.abs(ref).max():.1f})")
    assert diff <= tol


# ---------------------------------------------------------------- bad input

def _expect_error(run_mlxgp, model, component, tmp_path, ids="1,2,3"):
    proc = run_mlxgp("logits", "--model", model, "--input-ids", ids, "--out", tmp_path / "x.safetensors",
                     check=False, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"[{component}] "), proc.stderr
    return lines[0]


def test_truncated_gguf(default_gguf, run_mlxgp, tmp_path):
    bad = tmp_path / "trunc.gguf"
    with open(default_gguf, "rb") as f:
        bad.write_bytes(f.read(5_000_000))
    assert "truncated" in _expect_error(run_mlxgp, bad, "gguf", tmp_path)
    head = tmp_path / "head.gguf"
    head.write_bytes(default_gguf.read_bytes()[:100])
    _expect_error(run_mlxgp, head, "gguf", tmp_path)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    _expect_error(run_mlxgp, junk, "gguf", tmp_path)


def test_truncated_safetensors(tiny_dir, run_mlxgp, tmp_path):
    _, folder = tiny_dir("llama")
    bad = tmp_path / "m"
    shutil.copytree(folder, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert "model.safetensors" in _expect_error(run_mlxgp, bad, "safetensors", tmp_path)
    (bad / "model.safetensors").write_bytes(struct.pack("<Q", 10 ** 12) + b"{}")
    _expect_error(run_mlxgp, bad, "safetensors", tmp_path)


def test_malformed_config(tiny_dir, run_mlxgp, tmp_path):
    _, folder = tiny_dir("llama")
    bad = tmp_path / "m"
    shutil.copytree(folder, bad)
    (bad / "config.json").write_text('{"model_type": "llama", "hidden_size": ')
    _expect_error(run_mlxgp, bad, "config", tmp_path)


def test_unknown_model_type(tiny_dir, run_mlxgp, tmp_path):
    _, folder = tiny_dir("llama")
    bad = tmp_path / "m"
    shutil.copytree(folder, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model_type"] = "rwkv"
    (bad / "config.json").write_text(json.dumps(cfg))
    line = _expect_error(run_mlxgp, bad, "model", tmp_path)
    prefix = "[model] unknown model_type 'rwkv' (supported: "
    assert line.startswith(prefix) and line.endswith(")"), line
    listed = line[len(prefix):-1].split(", ")
    assert {"llama", "mistral", "qwen2", "qwen3", "gemma2", "phi3", "mixtral"} <= set(listed), line


def test_missing_path_and_bad_ids(tiny_dir, run_mlxgp, tmp_path):
    _expect_error(run_mlxgp, tmp_path / "does-not-exist", "load", tmp_path)
    _, folder = tiny_dir("llama")
    line = _expect_error(run_mlxgp, folder, "logits", tmp_path, ids="1,512")
    assert line == "[logits] token id 512 is outside the vocabulary (size 512)"
