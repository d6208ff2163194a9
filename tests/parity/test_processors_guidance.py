"""Classifier-free guidance (guidance_scale) at the processor level: transformers'
UnbatchedClassifierFreeGuidanceLogitsProcessor, running its unconditional forward on a tiny random
llama, against `mlxgp process-logits --model` on the same checkpoint, with the same scores and ids.
Ids after the prompt are generated tokens: transformers is called once per step (as generate() does,
so its unconditional KV cache advances a token at a time), mlxgp replays them through on_token().
The end-to-end test (test_processors_e2e.py) covers guidance on the default model."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

# The unconditional logits differ from transformers' by the models' own fp32 difference (test_logits_parity
# allows 1e-4); guidance scales that difference by |1 - scale|.
ATOL = 1e-4

CASES = [  # (name, scale, negative prompt ids or None, batch, prompt length, total length)
    ("scale 1.5, last prompt token", 1.5, None, 1, 6, 6),
    ("scale 0.5, negative prompt, batch 2", 0.5, [5, 9, 100, 7], 2, 5, 5),
    ("scale 3, 4 generated tokens, batch 3", 3.0, None, 3, 4, 8),
    ("scale 2, negative prompt, 3 generated tokens, batch 2", 2.0, [11, 12], 2, 3, 6),
    ("scale 0: unconditional only", 0.0, [40, 41, 42], 1, 2, 3),
]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return tiny_models.make_tiny_model("llama", tmp_path_factory.mktemp("cfg_llama"))


def _reference(model, scale, negative, ids, prompt_len, scores):
    import torch
    import transformers.generation.logits_process as lp

    ids = torch.tensor(ids)
    # mlxgp shares one negative prompt across the rows: transformers gets it repeated per row.
    proc = lp.UnbatchedClassifierFreeGuidanceLogitsProcessor(
        scale, model, unconditional_ids=None if negative is None else torch.tensor([negative] * ids.shape[0]))
    with torch.no_grad():
        # generate() calls the processor at every step; only the last call's output is compared.
        for t in range(prompt_len, ids.shape[1]):
            proc(ids[:, :t], torch.zeros(ids.shape[0], scores.shape[1]))
        return proc(ids, torch.from_numpy(scores.copy())).numpy()


@pytest.mark.parametrize("name,scale,negative,batch,prompt_len,total", CASES, ids=[c[0] for c in CASES])
def test_guidance_processor_parity(tiny_llama, run_mlxgp, tmp_path, name, scale, negative, batch, prompt_len, total):
    from safetensors.numpy import load_file, save_file

    model, folder = tiny_llama
    vocab = model.config.vocab_size
    rng = np.random.default_rng(total * 10 + batch)
    scores = (rng.standard_normal((batch, vocab)) * 3).astype(np.float32)
    scores[0, :7] = -np.inf  # -inf stays -inf through log_softmax and the mix (nan at scale 0, in both)
    ids = rng.integers(3, vocab, (batch, total)).tolist()
    save_file({"scores": scores}, str(tmp_path / "in.safetensors"))
    (tmp_path / "gen.json").write_text(json.dumps({"guidance_scale": scale}))
    (tmp_path / "ids.json").write_text(json.dumps(ids))
    extra = ["--negative-prompt-ids", ",".join(map(str, negative))] if negative else []
    run_mlxgp("process-logits", "--model", folder, "--dtype", "float32", "--config", tmp_path / "gen.json",
              "--scores", tmp_path / "in.safetensors", "--input-ids-file", tmp_path / "ids.json",
              "--prompt-len", prompt_len, "--out", tmp_path / "out.safetensors", *extra)
    ours = load_file(str(tmp_path / "out.safetensors"))["scores"]
    ref = _reference(model, scale, negative, ids, prompt_len, scores)
    assert ours.shape == ref.shape
    assert np.array_equal(np.isneginf(ours), np.isneginf(ref))
    assert np.array_equal(np.isnan(ours), np.isnan(ref))  # scale 0 * -inf is nan in both
    fin = np.isfinite(ref)
    diff = float(np.abs(ours[fin] - ref[fin]).max())
    print(f"{name}: max |diff| {diff:.2e}")
    assert diff <= ATOL


def test_guidance_needs_a_model(run_mlxgp, tmp_path):
    from safetensors.numpy import save_file

    save_file({"scores": np.zeros((1, 10), np.float32)}, str(tmp_path / "in.safetensors"))
    (tmp_path / "gen.json").write_text('{"guidance_scale": 2}')
    (tmp_path / "ids.json").write_text("[[1]]")
    proc = run_mlxgp("process-logits", "--config", tmp_path / "gen.json", "--scores", tmp_path / "in.safetensors",
                     "--input-ids-file", tmp_path / "ids.json", "--out", tmp_path / "out.safetensors", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "[config] guidance_scale needs the model" in proc.stderr
