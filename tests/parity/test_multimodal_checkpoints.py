"""Multimodal checkpoints whose language model mlxgp runs (Gemma 3 4B+ as gemma3, Mistral Small 3.x and
Ministral 3 as mistral3, Qwen2.5-VL / Qwen3-VL as qwen2_5_vl / qwen3_vl, Llama 4 as llama4), beyond the per-architecture parity of test_architectures.py (logits, greedy,
batches, beams and mlx-lm's 4-bit folders on tiny_models' "gemma3", "mistral3", "mistral3-ministral3"):

- the tensor layouts people's files have: transformers' save_pretrained (language_model.model.*), the
  transformers 4.52 - 4.57 one (model.language_model.*, lm_head.*), mlx-lm's; the vision tower is not read;
- Gemma 3's own sparse text_config (google's config.json lists only what differs from Gemma3TextConfig),
  read with the class's defaults as transformers reads it;
- `mlxgp convert` writes the folder mlx-lm's gemma3 / mistral3 load, with the same logits;
- full fine-tuning saves the language model under the checkpoint's own names.
transformers (and mlx-lm) run live on the same files."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402
from test_architectures import tiny  # noqa: E402,F401  (the tiny models by architecture, built once per module)

IDS = np.random.default_rng(3).integers(3, 490, 36).tolist()


def _logits(run_mlxgp, folder, tmp_path, ids=IDS):
    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out, "--dtype", "float32",
              "--prefill", len(ids) // 2)
    return load_file(str(out))["logits"]


def _hf(folder):
    import torch
    import transformers

    cfg = transformers.AutoConfig.from_pretrained(folder)
    cls = {"gemma3": transformers.Gemma3ForConditionalGeneration,
           "mistral3": transformers.Mistral3ForConditionalGeneration,
           "qwen2_5_vl": transformers.Qwen2_5_VLForConditionalGeneration,
           "qwen3_vl": transformers.Qwen3VLForConditionalGeneration,
           "llama4": transformers.Llama4ForConditionalGeneration}[cfg.model_type]
    return cls.from_pretrained(folder, dtype=torch.float32).eval()


@pytest.mark.parametrize("arch", ["gemma3", "mistral3"])
def test_transformers_4_5x_layout_reads_as_the_saved_one(arch, tiny, run_mlxgp, tmp_path):
    """The same weights as transformers 4.52 - 4.57 saved them (model.language_model.*, model.vision_tower.*,
    model.multi_modal_projector.*, lm_head.*): transformers and mlxgp read them as the save_pretrained layout."""
    model, src = tiny(arch)
    folder = tmp_path / "v4"
    shutil.copytree(src, folder)
    w = load_file(str(folder / "model.safetensors"))
    renamed = {}
    for k, v in w.items():
        if k.startswith("language_model.lm_head."):
            k = k.removeprefix("language_model.")
        elif k.startswith("language_model.model."):
            k = "model.language_model." + k.removeprefix("language_model.model.")
        else:
            k = "model." + k
        renamed[k] = v
    assert any(k.startswith("model.vision_tower.") for k in renamed)
    save_file(renamed, str(folder / "model.safetensors"), metadata={"format": "pt"})
    ref = tiny_models.hf_stepwise_logits(_hf(folder), IDS, len(IDS) // 2)
    want = tiny_models.hf_stepwise_logits(model, IDS, len(IDS) // 2)
    assert np.abs(ref - want).max() <= 1e-4  # transformers reads both layouts as the same model
    got, saved = _logits(run_mlxgp, folder, tmp_path), _logits(run_mlxgp, src, tmp_path)
    diff = float(np.abs(got - ref).max())
    print(f"{arch} in transformers 4.5x's layout: max |diff| vs transformers {diff:.3e}")
    assert np.array_equal(got, saved)
    assert np.abs(ref).max() > 0.5 and diff <= 1e-4


def test_gemma3_sparse_text_config_takes_gemma3_text_defaults(run_mlxgp, tmp_path):
    """google/gemma-3-4b-it's config.json gives text_config only its sizes, window and rope scaling; heads (8 /
    4), head_dim and query_pre_attn_scalar (256), the rope bases (1e6 global, 1e4 local), every 6th layer global,
    the activation and the norm epsilon come from Gemma3TextConfig. Here a tiny model with those defaults, its
    config.json stripped the same way: transformers and mlxgp read the stripped folder."""
    import transformers

    text = transformers.Gemma3TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                                         sliding_window=8, max_position_embeddings=1024,
                                         rope_parameters={"sliding_attention": {"rope_type": "default"},
                                                          "full_attention": {"rope_type": "linear", "factor": 2.0}})
    vision = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=2, image_size=28, patch_size=14)
    cfg = transformers.Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4,
                                    boi_token_index=497, eoi_token_index=498, image_token_index=499)
    _, folder = tiny_models.make_model_from_config(cfg, tmp_path / "g3")
    path = folder / "config.json"
    config = json.loads(path.read_text())
    tc = config["text_config"]
    kept = {"hidden_size", "intermediate_size", "model_type", "num_hidden_layers", "sliding_window", "vocab_size"}
    config["text_config"] = {k: v for k, v in tc.items() if k in kept}
    config["text_config"]["rope_scaling"] = {"rope_type": "linear", "factor": 2.0}  # as google writes it
    path.write_text(json.dumps(config))
    hf = _hf(folder)
    t = hf.config.text_config
    assert (t.num_attention_heads, t.num_key_value_heads, t.head_dim, t.query_pre_attn_scalar) == (8, 4, 256, 256)
    assert t.layer_types.count("full_attention") == 1
    ref = tiny_models.hf_stepwise_logits(hf, IDS, len(IDS) // 2)
    got = _logits(run_mlxgp, folder, tmp_path)
    diff = float(np.abs(got - ref).max())
    print(f"gemma3 sparse text_config: max |diff| vs transformers {diff:.3e}")
    assert np.abs(ref).max() > 0.5 and diff <= 1e-4


@pytest.mark.parametrize("arch", ["gemma3", "mistral3", "mistral3-ministral3", "qwen2_5_vl", "qwen3_vl", "llama4"])
@pytest.mark.parametrize("quantize", [False, True])
def test_mlxgp_convert_folder_loads_in_mlx_lm(arch, quantize, tiny, run_mlxgp, tmp_path):
    """`mlxgp convert` (float, or 4-bit g64) writes the language model as mlx-lm's convert does
    (language_model.*, the outer config.json with "quantization"), no vision tensors; mlx-lm's gemma3 /
    mistral3 load it and give mlxgp's logits on it."""
    import mlx.core as mx
    from mlx_lm.utils import load_model

    _, src = tiny(arch)
    folder = tmp_path / "hf"
    shutil.copytree(src, folder)
    tiny_models.mlx_lm_layout(folder, arch)
    out = tmp_path / "mlx"
    run_mlxgp("convert", "--hf-path", folder, "--mlx-path", out, *(["--quantize"] if quantize else []))
    names = list(mx.load(str(out / "model.safetensors")))
    assert names and all(n.startswith("language_model.") for n in names), names[:5]
    assert not any("vision" in n or "projector" in n for n in names)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == arch.split("-")[0] and "text_config" in config
    assert ("quantization" in config) == quantize
    ref_model, _ = load_model(out)
    ref = np.array(ref_model(mx.array([IDS]))[0].astype(mx.float32))
    got_path = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", out, "--input-ids", ",".join(map(str, IDS)), "--out", got_path)
    diff = float(np.abs(load_file(str(got_path))["logits"] - ref).max())
    print(f"{arch} mlxgp convert{' --quantize' if quantize else ''} in mlx-lm: max |diff| {diff:.3e}")
    assert np.abs(ref).max() > 0.5 and diff <= 1e-4


# Where transformers' save_pretrained puts the first layer's q_proj: language_model.model.* (mistral3, llama4), the
# original Qwen2.5-VL layout's model.* beside visual.*, Qwen3-VL's model.language_model.*.
SAVED_Q = {"mistral3": "language_model.model.layers.0.self_attn.q_proj.weight",
           "llama4": "language_model.model.layers.0.self_attn.q_proj.weight",
           "qwen2_5_vl": "model.layers.0.self_attn.q_proj.weight",
           "qwen3_vl": "model.language_model.layers.0.self_attn.q_proj.weight"}


@pytest.mark.parametrize("arch", ["mistral3", "qwen2_5_vl", "qwen3_vl", "llama4"])
def test_full_fine_tune_saves_the_checkpoints_own_names(arch, tiny, run_mlxgp, tmp_path):
    """train --mode full on a multimodal checkpoint: model.safetensors names the language model as the checkpoint
    does (transformers' save_pretrained layout), and transformers reads them into its ForConditionalGeneration class
    with the vision tower taken from the original."""
    import torch

    model, src = tiny(arch)
    data = tmp_path / "d.jsonl"
    rng = np.random.default_rng(0)
    data.write_text("".join(json.dumps({"input_ids": rng.integers(3, 500, 12).tolist()}) + "\n" for _ in range(4)))
    run_mlxgp("train", "--model", src, "--data", data, "--out", tmp_path / "out", "--mode", "full", "--steps", 2,
              "--lr", 0.05, "--optimizer", "sgd", "--batch-size", 2)
    trained = load_file(str(tmp_path / "out" / "model.safetensors"))
    original = load_file(str(src / "model.safetensors"))
    language = {k for k in original if not any(part in k for part in ("vision", "visual", "projector"))}
    assert set(trained) == language
    merged = tmp_path / "merged"
    shutil.copytree(src, merged)
    save_file({**original, **trained}, str(merged / "model.safetensors"), metadata={"format": "pt"})
    hf = _hf(merged)
    got = {n: p.detach().numpy() for n, p in hf.named_parameters()}
    # (Llama4ForConditionalGeneration keeps its language model as a Llama4ForCausalLM, whose forward is the reference:
    # its own fails in transformers 5.24, tiny_models.make_model_from_config; `model` is that language model.)
    llama4 = arch == "llama4"
    q = SAVED_Q[arch] if llama4 else "model.language_model.layers.0.self_attn.q_proj.weight"
    assert np.array_equal(got[q], trained[SAVED_Q[arch]])
    before = dict(model.named_parameters())[q.removeprefix("language_model.") if llama4 else q]
    moved = float(np.abs(got[q] - before.detach().numpy()).max())
    assert moved > 1e-4, moved
    with torch.no_grad():
        assert torch.isfinite((hf.language_model if llama4 else hf)(torch.tensor([IDS])).logits).all()
