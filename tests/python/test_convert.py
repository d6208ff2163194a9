"""convert_hf_to_mlx / `mlxgp convert` on a local HF folder: mlx-lm's layout, loadable by mlxgp and by
mlx_lm.load with the same greedy tokens (and, unquantized, transformers' tokens)."""
import json
import subprocess

import pytest

PROMPT = "The quick brown fox"


def mlxlm_greedy(path, ids, n):
    from mlx_lm import load, stream_generate

    model, tok = load(str(path))
    out = []
    for r in stream_generate(model, tok, ids, max_tokens=n):
        out.append(int(r.token))
    return out


@pytest.mark.parametrize("quantize,mode", [(False, None), (True, "affine"), (True, "mxfp4"), (True, "nvfp4")],
                         ids=["fp32", "q4", "mxfp4", "nvfp4"])
def test_convert_loads_in_mlxgp_and_mlx_lm(mgp, tiny_hf_tok, tmp_path, quantize, mode):
    from mlx_gen_parity.interop import convert_hf_to_mlx

    kw = {"q_mode": mode} if mode not in (None, "affine") else {}
    out = convert_hf_to_mlx(str(tiny_hf_tok), quantize=quantize, local_out=tmp_path / "mlx", **kw)
    files = {p.name for p in (tmp_path / "mlx").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    cfg = json.loads((tmp_path / "mlx" / "config.json").read_text())
    assert ("quantization" in cfg) == quantize
    if quantize:  # as mlx_lm.convert writes them (each mode's defaults)
        group = {"affine": 64, "mxfp4": 32, "nvfp4": 16}[mode]
        assert cfg["quantization"] == {"group_size": group, "bits": 4, "mode": mode}

    model, tok = mgp.load(out)
    assert (model.args.quantization is not None) == quantize
    assert model.args.quantization_mode == mode
    ids = tok.encode(PROMPT)
    ours = mgp.generate(model, tok, ids, max_tokens=16, eos_token_id=[])["tokens"]
    ref = mlxlm_greedy(out, ids, 16)
    assert ours == ref, (ours, ref)
    if not quantize:  # fp32 conversion is lossless: transformers on the source folder agrees
        import torch
        import transformers

        hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_hf_tok, dtype=torch.float32)
        with torch.no_grad():
            r = hf.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False, eos_token_id=None,
                            pad_token_id=0)
        assert ours == r[0, len(ids):].tolist()


def test_cli_convert_matches_python(mgp, tiny_hf_tok, tmp_path, mlxgp_bin):
    from mlx_gen_parity.interop import convert_hf_to_mlx

    a = convert_hf_to_mlx(tiny_hf_tok, quantize=True, local_out=tmp_path / "py")
    proc = subprocess.run([str(mlxgp_bin), "convert", "--hf-path", str(tiny_hf_tok), "--mlx-path",
                           str(tmp_path / "cli"), "--quantize"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import mlx.core as mx

    wa, wb = mx.load(str(tmp_path / "py" / "model.safetensors")), mx.load(str(tmp_path / "cli" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(mx.array_equal(wa[k], wb[k]).item() for k in wa)
    assert json.loads((tmp_path / "py" / "config.json").read_text()) == \
        json.loads((tmp_path / "cli" / "config.json").read_text())


def test_convert_errors(mgp, tiny_hf_tok, tmp_path, mlxgp_bin):
    from mlx_gen_parity.interop import convert_hf_to_mlx

    with pytest.raises(FileNotFoundError):
        convert_hf_to_mlx(tmp_path / "nope", local_out=tmp_path / "x")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    with pytest.raises(ValueError, match=r"\[convert\].*already exists"):
        convert_hf_to_mlx(tiny_hf_tok, local_out=tmp_path / "taken")
    with pytest.raises(ValueError, match=r"\[convert\].*bits"):
        convert_hf_to_mlx(tiny_hf_tok, quantize=True, q_bits=5, local_out=tmp_path / "y")
    assert not (tmp_path / "y").exists()
    # Bits or a group size without quantize: refused, as the CLI refuses them, instead of written unquantized.
    for kw in ({"q_bits": 8}, {"q_group_size": 32}, {"q_bits": 4, "q_group_size": 64}, {"q_mode": "mxfp4"}):
        with pytest.raises(ValueError) as e:
            convert_hf_to_mlx(tiny_hf_tok, local_out=tmp_path / "w", **kw)
        assert str(e.value) == "[convert] q_bits / q_group_size / q_mode need quantize=True"
        assert not (tmp_path / "w").exists()
    # A mode takes only its own bits / group size (mx.quantize), and the mode must be one of MLX's.
    with pytest.raises(ValueError) as e:
        convert_hf_to_mlx(tiny_hf_tok, quantize=True, q_mode="mxfp4", q_bits=8, local_out=tmp_path / "w")
    assert str(e.value) == "[convert] mode mxfp4 quantizes 4 bits in groups of 32, got 8 bits in groups of 32"
    with pytest.raises(ValueError) as e:
        convert_hf_to_mlx(tiny_hf_tok, quantize=True, q_mode="fp4", local_out=tmp_path / "w")
    assert str(e.value) == "[convert] unknown quantization mode 'fp4' (supported: affine, mxfp4, mxfp8, nvfp4)"
    assert not (tmp_path / "w").exists()
    proc = subprocess.run([str(mlxgp_bin), "convert", "--hf-path", str(tiny_hf_tok), "--mlx-path",
                           str(tmp_path / "w"), "--q-bits", "8"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr == "[cli] --q-bits / --q-group-size / --q-mode need --quantize\n"
    proc = subprocess.run([str(mlxgp_bin), "convert", "--hf-path", str(tmp_path / "nope"), "--mlx-path",
                           str(tmp_path / "z")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("[") and proc.stderr.count("\n") == 1
