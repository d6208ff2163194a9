"""MLX folders quantized in MLX's microscaling modes (mxfp4, mxfp8, nvfp4: e2m1 / e4m3 values with one uint8
scale per group and no biases), as `mlx_lm.convert --q-mode` writes them, against mlx-lm live on the same
folder: the logits of mlx-lm's model (its QuantizedLinear / QuantizedEmbedding / QuantizedSwitchLinear in that
mode), its greedy tokens from generate_step, and with `--dtype float32` mlx-lm's dequantize_model. The tiny
llama ties its head to the quantized embedding (as_linear in the mode); the tiny qwen3_moe has stacked
experts in the mode beside its routers, which mlx-lm's quant_predicate keeps affine 8-bit (a mixed folder);
gpt-oss's original MXFP4 experts stay mxfp4 through mlx_lm.convert, as in the folders mlx-lm publishes.
`mlxgp convert --q-mode` writes mlx_lm.convert's tensors and config byte for byte; the settings no mode
allows are refused in one line."""
import importlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

MODES = ["mxfp4", "mxfp8", "nvfp4"]


def _ids(n, vocab, seed):
    return np.random.default_rng(seed).integers(3, vocab, size=n).tolist()


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory, hf_default):
    """The tiny HF folder of arch laid out for mlx_lm.convert (which loads a tokenizer: the default model's)."""
    cache = {}

    def get(arch):
        if arch not in cache:
            root = tmp_path_factory.mktemp(arch.replace("-", "_"))
            _, src = tiny_models.make_tiny_model(arch, root / "src")
            folder = root / "hf"
            shutil.copytree(src, folder)
            tiny_models.mlx_lm_layout(folder, arch)
            hf_default[1].save_pretrained(folder)
            cache[arch] = folder
        return cache[arch]

    return get


def _mlx_lm_convert(src, out, **kw):
    importlib.import_module("mlx_lm.convert").convert(str(src), str(out), quantize=True, **kw)
    return out


def _mlxgp_logits(run_mlxgp, folder, ids, out, *extra):
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out, *extra)
    return load_file(str(out))["logits"]


def _forward(model, ids):
    import mlx.core as mx

    return np.array(model(mx.array([ids]))[0].astype(mx.float32))


def _against_mlx_lm(run_mlxgp, run_mlxgp_json, folder, ref_model, ids, tmp_path):
    """(mlx-lm's logits over ids, max |mlxgp's - them|, (mlxgp's greedy tokens, mlx-lm's) from ids[:12])."""
    ref = _forward(ref_model, ids)
    diff = float(np.abs(_mlxgp_logits(run_mlxgp, folder, ids, tmp_path / "l.safetensors") - ref).max())
    return ref, diff, _greedy_pair(run_mlxgp_json, folder, ref_model, ids[:12])


def _assert_matches_mlx_lm(label, ref, diff, out, want):
    print(f"{label}: logits vs mlx-lm {diff:.3e} (up to {np.abs(ref).max():.2f}), greedy "
          f"{sum(a == b for a, b in zip(out, want))}/{len(want)} identical")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4
    assert out == want


def _assert_same_tensors(ref_dir, got_dir):
    """The model.safetensors of two folders hold the same names, dtypes, shapes and bytes; returns got_dir's."""
    import mlx.core as mx

    want, got = (mx.load(str(d / "model.safetensors")) for d in (ref_dir, got_dir))
    assert sorted(got) == sorted(want)
    for k in want:
        assert (got[k].dtype, got[k].shape) == (want[k].dtype, want[k].shape), k
        assert mx.array_equal(got[k], want[k]).item(), k
    return got


def _greedy_pair(run_mlxgp_json, folder, ref_model, prompt, n=16):
    """(mlxgp generate's tokens, mlx-lm generate_step's: its prefill, then its cache one token at a time)."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    want = [int(t) for t, _ in generate_step(mx.array(prompt), ref_model, max_tokens=n)]
    out = run_mlxgp_json("generate", "--model", folder, "--input-ids", ",".join(map(str, prompt)), "--max-new-tokens",
                         n, "--min-new-tokens", n)["sequences"][0]["token_ids"]
    return out, want


@pytest.mark.parametrize("arch", ["llama", "qwen3_moe"])
@pytest.mark.parametrize("mode", MODES)
def test_mode_folder_matches_mlx_lm(arch, mode, hf_folder, run_mlxgp, run_mlxgp_json, tmp_path):
    import mlx.core as mx
    from mlx_lm.utils import dequantize_model, load_model

    qdir = _mlx_lm_convert(hf_folder(arch), tmp_path / "q", q_mode=mode)
    q = json.loads((qdir / "config.json").read_text())["quantization"]
    assert q["mode"] == mode
    weights = mx.load(str(qdir / "model.safetensors"))
    assert weights["model.embed_tokens.scales"].dtype == mx.uint8 and "model.embed_tokens.biases" not in weights
    if arch == "qwen3_moe":  # stacked experts in the mode, routers affine (mlx-lm's quant_predicate)
        assert weights["model.layers.0.mlp.switch_mlp.up_proj.scales"].dtype == mx.uint8
        assert q["model.layers.0.mlp.gate"] == {"group_size": 64, "bits": 8}
        assert "model.layers.0.mlp.gate.biases" in weights
    ref_model, _ = load_model(qdir)
    ids = _ids(30, weights["model.embed_tokens.weight"].shape[0], seed=4)
    ref, diff, (out, want) = _against_mlx_lm(run_mlxgp, run_mlxgp_json, qdir, ref_model, ids, tmp_path)

    # --dtype float32: the same weights dequantized (mlx-lm's dequantize_model) in a float forward.
    deq = _forward(dequantize_model(ref_model), ids)
    got_f = _mlxgp_logits(run_mlxgp, qdir, ids, tmp_path / "f.safetensors", "--dtype", "float32")
    diff_f = float(np.abs(got_f - deq).max())
    print(f"{arch} {mode}: --dtype float32 vs mlx-lm dequantized {diff_f:.3e}")
    assert diff_f <= 1e-4
    _assert_matches_mlx_lm(f"{arch} {mode}", ref, diff, out, want)


@pytest.mark.parametrize("arch,mode", [("llama", "mxfp4"), ("qwen3", "nvfp4")])
def test_bfloat16_mode_folder_matches_mlx_lm(arch, mode, hf_folder, run_mlxgp, run_mlxgp_json, tmp_path):
    """The usual checkpoint: bfloat16 weights, quantized in a mode (mlx_lm.convert --dtype bfloat16 --q-mode):
    activations stay bfloat16 as in mlx-lm; logits within bf16 rounding of mlx-lm's, greedy tokens identical.
    (Dense models: in bfloat16 mlx-lm's MoE routers softmax and renormalise in bfloat16 where mlxgp follows
    transformers' float32 router, so MoE logits differ by more than the modes do.)"""
    import mlx.core as mx
    from mlx_lm.utils import load_model

    qdir = _mlx_lm_convert(hf_folder(arch), tmp_path / "q", q_mode=mode, dtype="bfloat16")
    assert mx.load(str(qdir / "model.safetensors"))["model.norm.weight"].dtype == mx.bfloat16
    ids = _ids(30, 512, seed=6)
    ref, diff, (out, want) = _against_mlx_lm(run_mlxgp, run_mlxgp_json, qdir, load_model(qdir)[0], ids, tmp_path)
    print(f"{arch} {mode} bfloat16: logits vs mlx-lm {diff:.3e} (up to {np.abs(ref).max():.2f}), greedy "
          f"{sum(a == b for a, b in zip(out, want))}/{len(want)} identical")
    assert np.abs(ref).max() > 0.5
    assert diff <= 0.02
    assert out == want


def test_module_in_another_mode_than_the_folder(hf_folder, run_mlxgp, tmp_path):
    """An affine folder whose q_proj modules mlx-lm quantized as mxfp4 and whose down_proj modules as nvfp4
    (per-module entries with their own mode): each module runs in its own mode, as mlx-lm's load_model builds
    it."""
    from mlx_lm.utils import load_model

    def predicate(path, _):
        if path.endswith("q_proj"):
            return {"group_size": 32, "bits": 4, "mode": "mxfp4"}
        if path.endswith("down_proj"):
            return {"group_size": 16, "bits": 4, "mode": "nvfp4"}
        return True

    qdir = _mlx_lm_convert(hf_folder("olmo2"), tmp_path / "q", q_group_size=32, q_bits=4, quant_predicate=predicate)
    q = json.loads((qdir / "config.json").read_text())["quantization"]
    assert q["mode"] == "affine" and q["model.layers.0.self_attn.q_proj"]["mode"] == "mxfp4"
    ref_model, _ = load_model(qdir)
    ids = _ids(30, 512, seed=5)
    ref = _forward(ref_model, ids)
    got = _mlxgp_logits(run_mlxgp, qdir, ids, tmp_path / "l.safetensors")
    diff = float(np.abs(got - ref).max())
    print(f"olmo2 affine 4-bit with mxfp4 q_proj / nvfp4 down_proj: logits vs mlx-lm {diff:.3e}")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4


@pytest.mark.parametrize("kw", [{"q_mode": "mxfp4"}, {"q_bits": 8, "q_group_size": 64}], ids=["mxfp4", "mxfp4-q8"])
def test_gpt_oss_mlx_lm_folders_match_mlx_lm(kw, hf_default, run_mlxgp, run_mlxgp_json, tmp_path):
    """gpt-oss as mlx-lm publishes it: mlx_lm.convert of the original checkpoint (MXFP4 experts, which stay
    mxfp4) with every other projection in mxfp4, or affine 8-bit (the "MXFP4-Q8" layout); the routers affine
    8-bit either way (mlx-lm's gpt_oss quant_predicate). mlx-lm 0.32 hard-codes swiglu 1.702 / 7.0 and a
    truncated YaRN and reads only the older rope_scaling key, so the folder says so too."""
    from mlx_lm.utils import load_model

    _, orig = _gpt_oss_original(tmp_path, hf_default)
    qdir = _mlx_lm_convert(orig, tmp_path / "q", **kw)
    q = json.loads((qdir / "config.json").read_text())["quantization"]
    assert q["model.layers.0.mlp.router"] == {"group_size": 64, "bits": 8}
    assert q["mode"] == "mxfp4" and q["lm_head"]["mode"] == kw.get("q_mode", "affine")
    ids = _ids(40, 512, seed=6)
    ref, diff, (out, want) = _against_mlx_lm(run_mlxgp, run_mlxgp_json, qdir, load_model(qdir)[0], ids, tmp_path)
    _assert_matches_mlx_lm(f"gpt_oss mlx-lm folder {kw}", ref, diff, out, want)


def _gpt_oss_original(tmp_path, hf_default):
    """The tiny gpt_oss as its original checkpoint (MXFP4 experts), with the settings mlx-lm 0.32 hard-codes
    (swiglu 1.702 / 7.0, a truncated YaRN) and the older rope_scaling key it reads, and a tokenizer."""
    model, src = tiny_models.make_tiny_model("gpt_oss", tmp_path / "src")
    orig = tiny_models.gpt_oss_mxfp4_folder(model, src, tmp_path / "orig")
    for folder in (src, orig):
        cfg = json.loads((folder / "config.json").read_text())
        cfg["swiglu_limit"] = 7.0
        cfg["rope_parameters"]["truncate"] = True
        (folder / "config.json").write_text(json.dumps(cfg))
        tiny_models.legacy_rope_config(folder)
        hf_default[1].save_pretrained(folder)
    return src, orig


@pytest.mark.parametrize("mode", MODES)
def test_convert_q_mode_writes_mlx_lm_folder(mode, hf_folder, run_mlxgp, tmp_path):
    """`mlxgp convert --quantize --q-mode M` = `mlx_lm.convert(quantize=True, q_mode=M)`: the same tensors
    (names, dtypes, shapes, bytes; no biases in the mode, the qwen3_moe routers affine) and "quantization"."""
    import mlx.core as mx

    src = hf_folder("qwen3_moe")
    ref_dir, got_dir = _mlx_lm_convert(src, tmp_path / "mlx-lm", q_mode=mode), tmp_path / "mlxgp"
    run_mlxgp("convert", "--hf-path", src, "--mlx-path", got_dir, "--quantize", "--q-mode", mode)
    _assert_same_tensors(ref_dir, got_dir)
    q_want, q_got = (json.loads((d / "config.json").read_text())["quantization"] for d in (ref_dir, got_dir))
    assert q_got == q_want and q_got["mode"] == mode


def _with_quantization(folder, tmp_path, quantization):
    out = tmp_path / "edited"
    shutil.copytree(folder, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["quantization"] = quantization
    (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.mark.parametrize("quantization,message", [
    ({"group_size": 32, "bits": 8, "mode": "mxfp4"},
     "[config] unsupported quantization (mode mxfp4, bits 8, group_size 32)"),
    ({"group_size": 32, "bits": 4, "mode": "nvfp4"},
     "[config] unsupported quantization (mode nvfp4, bits 4, group_size 32)"),
    ({"group_size": 32, "bits": 4, "mode": "fp4"},
     "[config] unsupported quantization mode 'fp4' (supported: affine, mxfp4, mxfp8, nvfp4)"),
    ({"group_size": 16, "bits": 4, "mode": "nvfp4", "model.layers.0.mlp.switch_mlp.up_proj":
      {"group_size": 16, "bits": 4, "mode": "nvfp4", "global_scale": True}},
     "[config] nvfp4 global scales for 'model.layers.0.mlp.switch_mlp.up_proj' are not supported (MLX's CPU "
     "kernels have none)"),
])
def test_config_settings_no_mode_allows_are_refused(quantization, message, hf_folder, run_mlxgp, tmp_path):
    qdir = _mlx_lm_convert(hf_folder("qwen3_moe"), tmp_path / "q", q_mode="nvfp4")
    edited = _with_quantization(qdir, tmp_path, quantization)
    r = run_mlxgp("logits", "--model", edited, "--input-ids", "1,2,3", "--out", tmp_path / "l.safetensors",
                  check=False)
    assert r.returncode == 2 and r.stderr.strip() == message, r.stderr


def test_nvfp4_global_scale_tensor_refused_by_name(hf_folder, run_mlxgp, tmp_path):
    """mlx-lm's per-expert nvfp4 tensor scale (quantize_model(global_scale=True)) cannot run on MLX's CPU
    (gather_qmm: "Global scale is only supported on the GPU"): a folder holding one is refused naming it."""
    import mlx.core as mx

    qdir = _mlx_lm_convert(hf_folder("qwen3_moe"), tmp_path / "q", q_mode="nvfp4")
    weights = mx.load(str(qdir / "model.safetensors"))
    weights["model.layers.1.mlp.switch_mlp.down_proj.global_scale"] = mx.ones((4,))
    mx.save_safetensors(str(qdir / "model.safetensors"), weights, {"format": "mlx"})
    r = run_mlxgp("logits", "--model", qdir, "--input-ids", "1,2,3", "--out", tmp_path / "l.safetensors", check=False)
    assert r.returncode == 2 and r.stderr.strip() == (
        "[model] tensor 'model.layers.1.mlp.switch_mlp.down_proj.global_scale': nvfp4 global scales are not "
        "supported (MLX's CPU kernels have none)"), r.stderr


@pytest.mark.parametrize("args,message", [
    (["--q-mode", "mxfp4", "--q-bits", "8"], "[convert] mode mxfp4 quantizes 4 bits in groups of 32, got 8 bits in "
                                             "groups of 32"),
    (["--q-mode", "nvfp4", "--q-group-size", "32"], "[convert] mode nvfp4 quantizes 4 bits in groups of 16, got 4 "
                                                    "bits in groups of 32"),
    (["--q-mode", "int4"], "[convert] unknown quantization mode 'int4' (supported: affine, mxfp4, mxfp8, nvfp4)"),
])
def test_convert_q_mode_settings_refused(args, message, hf_folder, run_mlxgp, tmp_path):
    out = tmp_path / "out"
    r = run_mlxgp("convert", "--hf-path", hf_folder("llama"), "--mlx-path", out, "--quantize", *args, check=False)
    assert r.returncode == 2 and r.stderr.strip() == message, r.stderr
    assert not out.exists()
    r = run_mlxgp("convert", "--hf-path", hf_folder("llama"), "--mlx-path", out, "--q-mode", "mxfp4", check=False)
    assert r.returncode == 2 and r.stderr.strip() == "[cli] --q-bits / --q-group-size / --q-mode need --quantize"


@pytest.mark.parametrize("kw,args", [({}, []), ({"quantize": True, "q_group_size": 32}, ["--quantize", "--q-group-size", 32]),
                                     ({"quantize": True, "q_mode": "mxfp4"}, ["--quantize", "--q-mode", "mxfp4"])],
                         ids=["plain", "affine-g32", "mxfp4"])
def test_convert_gpt_oss_original_checkpoint_as_mlx_lm(kw, args, hf_default, run_mlxgp, tmp_path):
    """`mlxgp convert` of gpt-oss's original checkpoint = mlx_lm.convert of it: mlx-lm's names (experts.<proj>,
    the MXFP4 experts kept as mxfp4), its routers at 8 bits, and its "quantization" ({32, 4, mxfp4} from the
    checkpoint's quantization_config, with an entry per module quantized besides), byte for byte."""
    import mlx.core as mx

    _, orig = _gpt_oss_original(tmp_path, hf_default)
    ref_dir, got_dir = tmp_path / "mlx-lm", tmp_path / "mlxgp"
    importlib.import_module("mlx_lm.convert").convert(str(orig), str(ref_dir), **kw)
    run_mlxgp("convert", "--hf-path", orig, "--mlx-path", got_dir, *args)
    got = _assert_same_tensors(ref_dir, got_dir)
    assert got["model.layers.0.mlp.experts.gate_proj.scales"].dtype == mx.uint8
    cfg_want, cfg_got = (json.loads((d / "config.json").read_text()) for d in (ref_dir, got_dir))
    for key in ("quantization", "quantization_config"):
        assert cfg_got[key] == cfg_want[key], key


def test_convert_float_gpt_oss_loads_in_mlx_lm(hf_default, run_mlxgp, run_mlxgp_json, tmp_path):
    """transformers' float gpt_oss folder, which mlx_lm.convert cannot read (its sanitize splits gate_up_proj on
    the wrong axis): `mlxgp convert --quantize` writes it in mlx-lm's layout, and mlx-lm's load_model runs it
    to mlxgp's logits and greedy tokens."""
    from mlx_lm.utils import load_model

    src, _ = _gpt_oss_original(tmp_path, hf_default)
    qdir = tmp_path / "q"
    run_mlxgp("convert", "--hf-path", src, "--mlx-path", qdir, "--quantize", "--q-group-size", 32)
    q = json.loads((qdir / "config.json").read_text())["quantization"]
    assert q["model.layers.0.mlp.router"] == {"group_size": 64, "bits": 8}
    ids = _ids(40, 512, seed=8)
    ref, diff, (out, want) = _against_mlx_lm(run_mlxgp, run_mlxgp_json, qdir, load_model(qdir)[0], ids, tmp_path)
    _assert_matches_mlx_lm("gpt_oss float -> mlxgp convert 4-bit, run by mlx-lm", ref, diff, out, want)
