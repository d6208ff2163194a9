"""Cached decode steps over more than 512 keys, where the CPU decode attention splits each row's keys into
chunks of 256 (flash-decoding, src/kernels/decode_attention.cpp), against transformers run live on the same
tiny fp32 model and ids."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

PREFILL, TOTAL = 1290, 1300  # 10 cached decode steps over 1290 to 1299 keys: 6 chunks each


def test_cached_decode_past_512_keys_matches_transformers(run_mlxgp, tmp_path):
    model, folder = tiny_models.make_tiny_model("llama-plain", tmp_path / "m", max_position_embeddings=2048)
    ids = np.random.default_rng(5).integers(3, model.config.vocab_size, size=TOTAL).tolist()
    ref = tiny_models.hf_stepwise_logits(model, ids, PREFILL)[PREFILL:]
    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out,
              "--dtype", "float32", "--prefill", PREFILL)
    from safetensors.numpy import load_file

    got = load_file(str(out))["logits"][PREFILL:]
    assert got.shape == ref.shape == (TOTAL - PREFILL, model.config.vocab_size)
    diff = float(np.abs(got - ref).max())
    print(f"max |diff| = {diff:.3e} over {TOTAL - PREFILL} cached decode steps past {PREFILL} keys; "
          f"argmax equal {int((got.argmax(-1) == ref.argmax(-1)).sum())}/{TOTAL - PREFILL}")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4
    assert (got.argmax(-1) == ref.argmax(-1)).all()
