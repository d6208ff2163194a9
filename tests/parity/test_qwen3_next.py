"""Qwen3-Next (qwen3_next) and Qwen3.5 (qwen3_5_text, qwen3_5_moe_text, and the multimodal qwen3_5 / qwen3_5_moe
around them) beyond test_architectures.py's shared checks: the gated delta nets' recurrent state (the convolution's
last inputs and the delta rule's state) in every mode that keeps or moves caches, against transformers 5.24 on the
same fp32 weights.

- Rows that join and leave a running batch (5 prompts, 2 rows at a time, each with its own budget), on standard
  and on rotating attention caches: each row's tokens are transformers' greedy generate().
- A saved prompt cache (attention keys / values, both recurrent states) continued by a longer prompt.
- What a recurrent state cannot do is refused in one line: speculative and prompt-lookup decoding, and a prompt cache
  that holds the whole prompt.
- The released configs' spelling (Qwen3-Next-80B-A3B's: full_attention_interval, top-level rope_theta and
  partial_rotary_factor; Qwen3.5's rope_parameters with mrope sections) and the Qwen3.5-MoE uploads' fused experts
  (experts.gate_up_proj / down_proj): logits against transformers.
- mlx-lm's folders store the zero-centred norms as 1 + w and the convolutions [C, K, 1]: mlxgp reads them (logits
  against mlx-lm 0.32) and writes them back so (`mlxgp convert` in test_architectures.py).
- GGUF qwen3next / qwen35 / qwen35moe as llama.cpp's converter writes them (node-llama-cpp 3.21.1's libllama): F32
  files against llama.cpp and transformers' float64 forward, Q8_0 with --int8-activations against llama.cpp."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import recurrent_checks  # noqa: E402
import tiny_models  # noqa: E402
from cpu_features import needs_vnni  # noqa: E402

PREFILL, TOTAL = 16, 40


@pytest.fixture(scope="module")
def qwen3_next(tmp_path_factory):
    return tiny_models.make_tiny_model("qwen3_next", tmp_path_factory.mktemp("qwen3_next"))


def _ids(n, seed):
    return recurrent_checks.ids(n, seed)


def _logits(run_mlxgp, folder, ids, tmp_path, *flags):
    from safetensors.numpy import load_file

    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out, *flags)
    return load_file(str(out))["logits"]


@pytest.mark.parametrize("cache", [[], ["--max-kv-size", 64]], ids=["standard", "rotating"])
def test_rows_join_and_leave_a_running_batch(cache, qwen3_next, run_mlxgp, tmp_path):
    model, folder = qwen3_next
    recurrent_checks.check_rows_join_and_leave("qwen3_next", model, folder, run_mlxgp, tmp_path, cache)


def test_prompt_cache_holds_both_recurrent_states(qwen3_next, run_mlxgp, run_mlxgp_json, tmp_path):
    model, folder = qwen3_next
    shapes = recurrent_checks.check_prompt_cache(model, folder, run_mlxgp, run_mlxgp_json, tmp_path)
    # layer 0: the convolution's last 3 inputs of q, k, v (2 x 32 + 64 channels) and the state of 4 value heads
    assert shapes["layers.0.state.0"] == [1, 3, 128] and shapes["layers.0.state.1"] == [1, 4, 16, 16]
    assert "layers.2.keys" in shapes and "layers.0.keys" not in shapes


@pytest.mark.parametrize("flags", recurrent_checks.ROLLBACK_FLAGS, ids=["speculative", "prompt-lookup"])
def test_rolling_back_is_refused(flags, qwen3_next, run_mlxgp):
    recurrent_checks.check_rolling_back_refused(qwen3_next[1], run_mlxgp, flags, "qwen3_next", "gated delta nets")


def test_released_config_spelling(qwen3_next, run_mlxgp, tmp_path):
    """Qwen3-Next-80B-A3B's config.json (transformers 4.57's layout): no layer_types but full_attention_interval,
    rope_theta and partial_rotary_factor at the top level, rope_scaling null."""
    import torch
    import transformers

    _, src = qwen3_next
    folder = tmp_path / "m"
    shutil.copytree(src, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("layer_types")
    rope = cfg.pop("rope_parameters")
    cfg.update(full_attention_interval=3, rope_theta=rope["rope_theta"] * 10, rope_scaling=None,
               partial_rotary_factor=0.5)
    (folder / "config.json").write_text(json.dumps(cfg))
    ref_model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert ref_model.config.layer_types[2] == "full_attention" and ref_model.config.layer_types[3] != "full_attention"
    assert ref_model.config.rope_parameters["partial_rotary_factor"] == 0.5
    ids = _ids(TOTAL, seed=8)
    ref = tiny_models.hf_stepwise_logits(ref_model, ids, PREFILL)
    got = _logits(run_mlxgp, folder, ids, tmp_path, "--dtype", "float32", "--prefill", PREFILL)
    diff = float(np.abs(got - ref).max())
    print(f"qwen3_next, the released config's spelling: max |diff| = {diff:.3e} over {TOTAL} positions")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4


def test_fused_experts_of_the_qwen3_5_moe_uploads(run_mlxgp, tmp_path):
    """The Qwen3.5-MoE uploads hold each layer's experts fused (mlp.experts.gate_up_proj [E, 2I, hidden], down_proj),
    which transformers reads as they are: the same logits as the per-expert folder transformers saves."""
    import torch
    import transformers

    model, folder = tiny_models.make_tiny_model("qwen3_5_moe", tmp_path / "m")
    tiny_models.fuse_experts(folder)
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "np") as f:
        assert "model.language_model.layers.0.mlp.experts.gate_up_proj" in set(f.keys())
    ref_model = transformers.AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    ids = _ids(TOTAL, seed=9)
    ref = tiny_models.hf_stepwise_logits(ref_model, ids, PREFILL)
    got = _logits(run_mlxgp, folder, ids, tmp_path, "--dtype", "float32", "--prefill", PREFILL)
    diff = float(np.abs(got - ref).max())
    print(f"qwen3_5_moe with fused experts: max |diff| = {diff:.3e} over {TOTAL} positions")
    assert diff <= 1e-4


@pytest.mark.parametrize("arch", ["qwen3_next", "qwen3_5"])
def test_mlx_lm_folder_in_float(arch, run_mlxgp, tmp_path):
    """mlx-lm's own save of the model (norms stored as 1 + w, convolutions [C, K, 1]), unquantized: mlxgp's logits
    are mlx-lm's, and transformers' on the original folder."""
    import mlx.core as mx
    import torch
    from mlx_lm.utils import load_model, save_config, save_model

    model, src = tiny_models.make_tiny_model(arch, tmp_path / "hf")
    folder = tmp_path / "layout"
    shutil.copytree(src, folder)
    tiny_models.mlx_lm_layout(folder, arch)
    ref_model, config = load_model(folder)
    saved = tmp_path / "mlx"
    save_model(saved, ref_model)
    save_config(config, saved / "config.json")
    weights = mx.load(str(saved / "model.safetensors"))
    conv = next(v for k, v in weights.items() if k.endswith("linear_attn.conv1d.weight"))
    assert conv.shape[-1] == 1
    ids = _ids(30, seed=4)
    ref = np.array(ref_model(mx.array([ids]))[0].astype(mx.float32))
    with torch.no_grad():
        hf = model(torch.tensor([ids])).logits[0].numpy()
    got = _logits(run_mlxgp, saved, ids, tmp_path)
    diff, hf_diff = float(np.abs(got - ref).max()), float(np.abs(got - hf).max())
    print(f"{arch} mlx-lm folder: max |diff| = {diff:.3e} from mlx-lm, {hf_diff:.3e} from transformers")
    assert diff <= 1e-4 and hf_diff <= 1e-4


def _gguf_model(arch, tmp_path):
    """The tiny model as llama.cpp reads its files: qwen3next has no dense layers there (every layer's experts)."""
    return tiny_models.make_tiny_model(arch, tmp_path / "hf", **({"mlp_only_layers": []} if arch == "qwen3_next"
                                                                 else {}))


def _mtp_block(model, rng):
    """_Qwen35MtpMixin's block after the model's layers (random weights): a gated-attention decoder layer as the
    model's full-attention one, with nextn.eh_proj / enorm / hnorm / shared_head_norm."""
    n, h = model.config.num_hidden_layers, model.config.hidden_size
    full = model.config.layer_types.index("full_attention")
    out = {name.replace(f"blk.{full}.", f"blk.{n}."): rng.standard_normal(t.shape).astype(np.float32) * 0.05
           for name, t in tiny_models._gguf_tensors(model) if name.startswith(f"blk.{full}.")}
    out[f"blk.{n}.nextn.eh_proj.weight"] = rng.standard_normal((h, 2 * h)).astype(np.float32) * 0.05
    for norm in ("enorm", "hnorm", "shared_head_norm"):
        out[f"blk.{n}.nextn.{norm}.weight"] = np.ones(h, np.float32)
    return out


@pytest.mark.parametrize("arch, mtp", [("qwen3_next", 0), ("qwen3_5_text", 0), ("qwen3_5_moe_text", 0),
                                       ("qwen3_5_moe_text", 1)], ids=["qwen3next", "qwen35", "qwen35moe", "qwen35moe-mtp"])
def test_gguf_as_llama_cpp(arch, mtp, run_mlxgp, run_mlxgp_json, tmp_path):
    """An F32 file as llama.cpp's converter writes it (qwen3next: in_proj_qkvz split into attn_qkv and attn_gate,
    ssm_ba; qwen35 / qwen35moe: the value heads reordered to llama.cpp's tiled order, ssm_beta / ssm_alpha; all:
    ssm_a = -exp(A_log), the convolution [channels, kernel], 1 + w norms, every full_attention_interval-th layer
    attention; with `mtp`, the multi-token-prediction block that llama.cpp's forward leaves out). Over 20 cached steps
    the float32 rounding of either side reaches 1e-4 at the positions these random models amplify it (transformers'
    own float32 forward too), so mlxgp is held to transformers' float64 forward within 1e-4 and to llama.cpp within
    2e-4; greedy tokens are llama.cpp's argmax after each of mlxgp's prefixes."""
    import torch
    import transformers
    from test_gguf_architectures import GREEDY_NEW, _vs_llama_cpp

    model, folder = _gguf_model(arch, tmp_path)
    extra = _mtp_block(model, np.random.default_rng(7)) if mtp else None
    path = tiny_models.write_tiny_gguf(model, tmp_path / "f32.gguf", "F32", vocab=True, extra=extra, mtp_layers=mtp)
    if mtp:
        from tests.refs import gguf_quant

        assert "blk.4.nextn.eh_proj.weight" in gguf_quant.tensor_types(path)
    ids, prefill = _ids(40, seed=15), 20
    ref, got, same = _vs_llama_cpp(run_mlxgp, run_mlxgp_json, path, ids, prefill, tmp_path)
    exact = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64,
                                                              experts_implementation="eager").eval()
    f64 = tiny_models.hf_stepwise_logits(exact, ids, prefill)[prefill - 1:len(ids) - 1]
    diff, vs64, ref64 = (float(np.abs(a - b).max()) for a, b in ((got, ref), (got, f64), (ref, f64)))
    print(f"{arch}{' with an MTP block' if mtp else ''} GGUF F32: max |diff| {diff:.3e} from llama.cpp, {vs64:.3e} from transformers' float64 (llama.cpp's "
          f"{ref64:.3e}); greedy {same}/{GREEDY_NEW} tokens llama.cpp's argmax")
    assert np.abs(ref).max() > 0.5
    assert vs64 <= 1e-4 and diff <= 2e-4
    assert same == GREEDY_NEW


@needs_vnni
@pytest.mark.parametrize("arch", ["qwen3_next", "qwen3_5_moe_text"])
def test_q8_0_gguf_with_int8_activations_as_llama_cpp(arch, run_mlxgp, tmp_path):
    """A Q8_0 file (the delta nets' projections quantized; the convolution, A and the norms F32) with
    --int8-activations: llama.cpp's logits."""
    from tests.refs import gguf_quant, llama_cpp

    model, _ = _gguf_model(arch, tmp_path)
    # (gguf-py's Q8_0, llama.cpp's rounding: quantize_rows takes 2-D tensors only, and the experts are 3-D)
    path = tiny_models.write_tiny_gguf(model, tmp_path / "q8.gguf", "Q8_0", vocab=True)
    types = gguf_quant.tensor_types(path)
    assert types["blk.0.attn_qkv.weight"] == "Q8_0" and types["blk.0.ssm_conv1d.weight"] == "F32"
    ids = _ids(40, seed=12)
    ref = llama_cpp.logits(path, ids, PREFILL, repack=False)
    got = _logits(run_mlxgp, path, ids, tmp_path, "--prefill", PREFILL, "--int8-activations")[PREFILL - 1:len(ids) - 1]
    diff = float(np.abs(got - ref).max())
    print(f"{arch} Q8_0 GGUF, int8 activations, vs llama.cpp: max |diff| {diff:.3e} (logits up to "
          f"{np.abs(ref).max():.2f})")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4
