"""Sliding-window attention against transformers 5.24, run live on tiny random checkpoints whose
sliding_window (8) is shorter than the prompt: mistral (every layer slides), qwen2 and qwen3 with
use_sliding_window and max_window_layers (only the later layers slide, as transformers' layer_types
say). `mlxgp logits` prefills part of the ids and decodes the rest through the KV cache, so both the
prefill mask and the decode mask are compared with transformers' full forward; greedy generation is
compared with transformers generate()."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

WINDOW = 8


def _config(arch):
    import transformers

    common = dict(tiny_models._COMMON, sliding_window=WINDOW)
    if arch == "mistral":
        return transformers.MistralConfig(**common, head_dim=16)
    rope = {"rope_type": "default", "rope_theta": 1000000.0}
    cls = transformers.Qwen2Config if arch == "qwen2" else transformers.Qwen3Config
    # Layer 0 full attention, layers 1 and 2 sliding (transformers derives layer_types from these).
    return cls(**common, use_sliding_window=True, max_window_layers=1, rope_parameters=rope)


@pytest.fixture(scope="module", params=["mistral", "qwen2", "qwen3"])
def sliding_model(request, tmp_path_factory):
    import torch
    import transformers

    torch.manual_seed(1)
    cfg = _config(request.param)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():  # tiny_models' init: logits well away from zero
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.08)
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.05)
    model.eval()
    folder = tmp_path_factory.mktemp(f"sliding-{request.param}")
    model.save_pretrained(folder)
    kinds = model.config.layer_types if request.param != "mistral" else ["sliding_attention"] * 3
    assert "sliding_attention" in kinds, kinds
    return request.param, model, folder


def _ids(n, seed):
    return np.random.default_rng(seed).integers(3, 512, size=n).tolist()


def test_logits_match_transformers(sliding_model, run_mlxgp, tmp_path):
    import torch
    from safetensors.numpy import load_file

    arch, model, folder = sliding_model
    ids = _ids(30, seed=5)  # 18 prefilled (past the window), 12 decoded through the cache
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
        # The window really matters: full causal attention gives other logits past position 8.
        full = transformers_without_window(model, ids)
    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--prefill", 18,
              "--dtype", "float32", "--out", out)
    got = load_file(str(out))["logits"]
    diff = float(np.abs(got - ref).max())
    effect = float(np.abs(full - ref)[WINDOW:].max())
    print(f"{arch} sliding_window={WINDOW}: max |diff| vs transformers {diff:.3e} over {len(ids)} positions; "
          f"the window itself changes logits by up to {effect:.3f}")
    assert np.abs(ref).max() > 0.5
    assert effect > 1e-2
    assert diff <= 1e-4, diff


def transformers_without_window(model, ids):
    """transformers' logits for the same weights with a window longer than the ids (no effect)."""
    import torch

    saved = model.config.sliding_window
    layers = [m for m in model.modules() if hasattr(m, "sliding_window")]
    before = [m.sliding_window for m in layers]
    try:
        model.config.sliding_window = 1 << 20
        for m in layers:
            m.sliding_window = None if m.sliding_window is None else 1 << 20
        return model(torch.tensor([ids]), use_cache=False).logits[0].numpy()
    finally:
        model.config.sliding_window = saved
        for m, w in zip(layers, before):
            m.sliding_window = w


def test_greedy_matches_transformers(sliding_model, run_mlxgp_json):
    import torch

    arch, model, folder = sliding_model
    ids = _ids(13, seed=9)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=24, eos_token_id=None,
                             pad_token_id=0, attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    ref = out[0, len(ids):].tolist()
    got = run_mlxgp_json("generate", "--model", folder, "--input-ids", ",".join(map(str, ids)),
                         "--max-new-tokens", 24, "--ignore-eos", "--dtype", "float32")
    ours = got["sequences"][0]["token_ids"]
    same = next((k for k in range(len(ref)) if ours[k] != ref[k]), len(ref))
    print(f"{arch} sliding greedy: {same}/{len(ref)} tokens identical")
    assert ours == ref
