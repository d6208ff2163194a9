"""Phi-3.5-MoE (phimoe) beyond test_architectures.py's shared checks.

LongRoPE past the original length: PhimoeRotaryEmbedding in transformers 4.56.2 (and Phi-3.5-MoE's own
modeling code) rotates a forward whose last position passes original_max_position_embeddings with the long factors
and long_mscale; transformers 5.x keeps the short factors there (its rope init is called without the sequence
length) and switches only the multiplier. mlxgp follows the model's code, so this test pins transformers 4.56.2
(installed by scripts/setup.sh into .cache/hf-legacy, run in a subprocess with the venv's torch) on the same fp32
weights, prefilled then decoded one token at a time across the switch.

Also: sparsemixer's threshold bites in the tiny model (some tokens weigh an expert 1, others share it), and
training, where transformers samples the experts with Gumbel noise, is refused in one line."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LEGACY = Path(os.environ.get("MLXGP_CACHE", ROOT / ".cache")) / "hf-legacy"
PREFILL, TOTAL = 16, 40  # the original length is 24: the decode steps cross it

# transformers 4.56.2's stepwise logits (its cache API of the time), in a subprocess with PYTHONPATH on the legacy
# install; argv: folder, ids (JSON), prefill, output .npy.
_LEGACY_STEPWISE = """
import json, sys
import numpy as np, torch, transformers
assert transformers.__version__ == "4.56.2", transformers.__version__
torch.set_num_threads(1)
folder, ids, prefill, out = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
model = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
rows = []
with torch.no_grad():
    r = model(torch.tensor([ids[:prefill]]), use_cache=True)
    rows.append(r.logits[0].numpy())
    for t in ids[prefill:]:
        r = model(torch.tensor([[t]]), past_key_values=r.past_key_values, use_cache=True)
        rows.append(r.logits[0].numpy())
np.save(out, np.concatenate(rows))
"""


@pytest.fixture(scope="module")
def long_model(tmp_path_factory):
    return tiny_models.make_tiny_model("phimoe-long", tmp_path_factory.mktemp("phimoe_long"))


def _ids(n, seed):
    return np.random.default_rng(seed).integers(3, 512, size=n).tolist()


def test_longrope_past_the_original_length_as_transformers_4_56(long_model, run_mlxgp, tmp_path):
    model, folder = long_model
    assert (LEGACY / "transformers").is_dir(), f"transformers 4.56.2 missing at {LEGACY}: run scripts/setup.sh"
    legacy = tmp_path / "legacy"
    shutil.copytree(folder, legacy)
    tiny_models.legacy_rope_config(legacy)  # 4.56's config layout: top-level rope_theta + rope_scaling
    ids = _ids(TOTAL, seed=3)
    ref_path = tmp_path / "ref.npy"
    env = dict(os.environ, PYTHONPATH=str(LEGACY), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", _LEGACY_STEPWISE, str(legacy), json.dumps(ids), str(PREFILL),
                           str(ref_path)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ref = np.load(ref_path)
    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out, "--dtype",
              "float32", "--prefill", PREFILL)
    from safetensors.numpy import load_file

    got = load_file(str(out))["logits"]
    assert got.shape == ref.shape == (TOTAL, 512)
    diff = float(np.abs(got - ref).max())
    # transformers 5.x (the venv's) on the same weights: equal below the original length, not past it (the switch
    # this test pins 4.56.2 for).
    current = tiny_models.hf_stepwise_logits(model, ids, PREFILL)
    below = float(np.abs(current[:24] - ref[:24]).max())
    past = float(np.abs(current[24:] - ref[24:]).max())
    print(f"phimoe LongRoPE across position 24: mlxgp vs transformers 4.56.2 max |diff| = {diff:.3e} over {TOTAL} "
          f"positions ({TOTAL - PREFILL} cached steps); transformers 5.24 vs 4.56.2: {below:.1e} below, {past:.1e} past")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4
    assert below <= 1e-5 and past > 1e-3


def test_sparsemixer_threshold_bites(long_model):
    """The tiny model's routing exercises both of sparsemixer's cases: experts weighted 1 (no other logit within the
    threshold) and weights shared in a softmax; test_architectures.py's logits show mlxgp's agree."""
    import torch

    model, _ = long_model
    seen = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(out[1]))
             for m in model.modules() if type(m).__name__ == "PhimoeTopKRouter"]
    with torch.no_grad():
        model(torch.tensor([_ids(TOTAL, seed=11)]))
    for h in hooks:
        h.remove()
    weights = torch.cat([w.flatten() for w in seen])
    whole = float((weights > 1 - 1e-6).float().mean())
    print(f"phimoe sparsemixer: {whole:.0%} of the chosen experts weigh 1, the rest share a softmax")
    assert 0.2 < whole < 0.9


def test_training_is_refused_in_one_line(long_model, run_mlxgp, tmp_path):
    _, folder = long_model
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"input_ids": _ids(16, seed=s)}) + "\n" for s in range(2)))
    p = run_mlxgp("train", "--model", folder, "--data", data, "--seq-len", 16, "--out", tmp_path / "o", "--steps", 1,
                  check=False)
    assert p.returncode != 0, p.stdout
    assert p.stderr.strip() == ("[train] phimoe cannot be trained: its router samples the experts in training "
                                "(sparsemixer's Gumbel draws from torch's RNG), which mlxgp cannot reproduce"), p.stderr
    assert not (tmp_path / "o").exists()
