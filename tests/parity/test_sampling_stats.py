"""Sampling statistics: the tokens mlxgp samples follow the processed distribution. A tiny random llama
keeps it fast: mlxgp draws the first new token N times in one run (num_return_sequences rows share
the prompt), transformers generate() on the same checkpoint gives its processed scores for that step
(output_scores: its own processors and warpers), and a chi-square goodness-of-fit test compares the
counts with softmax(scores). Fixed seeds make the outcome deterministic; runs are reproducible."""
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

N = 20000
PROMPT = [1, 37, 301, 5, 88, 140]
P_MIN = 1e-3  # reject the fit below this p-value

CONFIGS = [
    ("temperature + top_k + top_p", {"temperature": 0.7, "top_k": 40, "top_p": 0.9}),
    ("min_p + typical_p + repetition_penalty", {"temperature": 1.3, "top_k": 0, "min_p": 0.02, "typical_p": 0.9,
                                                "repetition_penalty": 1.3}),
    ("eta + epsilon + sequence_bias", {"top_k": 100, "eta_cutoff": 0.001, "epsilon_cutoff": 0.0005,
                                       "sequence_bias": [[[301, 7], 2.0], [[9], 1.5]]}),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_models.make_tiny_model("llama", tmp_path_factory.mktemp("sampling_llama"))


def _mlxgp_samples(run_mlxgp_json, folder, tmp_path, cfg, seed):
    path = tmp_path / "gen.json"
    path.write_text(json.dumps({**cfg, "do_sample": True, "max_new_tokens": 1, "num_return_sequences": N,
                                "seed": seed}))
    out = run_mlxgp_json("generate", "--model", folder, "--dtype", "float32", "--input-ids", ",".join(map(str, PROMPT)),
                         "--config", path)
    assert len(out["sequences"]) == N
    return [s["token_ids"][0] for s in out["sequences"]]


def _reference_probs(model, cfg):
    """softmax of transformers' processed scores for the first new token."""
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([PROMPT]), attention_mask=torch.ones(1, len(PROMPT), dtype=torch.long),
                             do_sample=True, max_new_tokens=1, return_dict_in_generate=True, output_scores=True,
                             output_logits=True, **cfg)
    probs = torch.softmax(out.scores[0][0].double(), -1).numpy()
    raw = torch.softmax(out.logits[0][0].double(), -1).numpy()
    return probs, raw


def _chi_square(counts, probs):
    """(statistic, degrees of freedom, p-value, tokens sampled outside the support). Bins with an expected
    count below 5 are pooled."""
    import torch

    n = sum(counts.values())
    outside = [t for t in counts if probs[t] == 0]
    expected = probs * n
    big = expected >= 5
    obs = np.array([counts.get(t, 0) for t in range(len(probs))], dtype=np.float64)
    o, e = list(obs[big]), list(expected[big])
    if (~big).any() and expected[~big].sum() > 0:
        o.append(obs[~big].sum())
        e.append(expected[~big].sum())
    o, e = np.array(o), np.array(e)
    stat = float(((o - e) ** 2 / e).sum())
    dof = len(o) - 1
    p = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                      torch.tensor(stat / 2, dtype=torch.float64)))
    return stat, dof, p, outside


@pytest.mark.parametrize("name,cfg", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_sampled_frequencies_match_the_processed_distribution(tiny, run_mlxgp_json, tmp_path, name, cfg):
    model, folder = tiny
    probs, raw = _reference_probs(model, cfg)
    support = int((probs > 0).sum())
    assert 5 < support < len(probs), f"the warpers should cut the vocabulary but keep a spread (kept {support})"
    counts = Counter(_mlxgp_samples(run_mlxgp_json, folder, tmp_path, cfg, seed=2024))
    stat, dof, p, outside = _chi_square(counts, probs)
    print(f"{name}: support {support}, chi2 {stat:.1f} dof {dof} p {p:.3g}")
    assert not outside, f"sampled tokens outside the processed support: {outside}"
    assert p > P_MIN
    # The test has power: the same counts reject the unprocessed distribution.
    assert _chi_square(counts, raw)[2] < 1e-6


def test_sampling_is_reproducible_with_the_seed(tiny, run_mlxgp_json, tmp_path):
    _, folder = tiny
    cfg = {"temperature": 0.9, "top_k": 0, "top_p": 0.95}
    a = _mlxgp_samples(run_mlxgp_json, folder, tmp_path, cfg, seed=5)
    b = _mlxgp_samples(run_mlxgp_json, folder, tmp_path, cfg, seed=5)
    c = _mlxgp_samples(run_mlxgp_json, folder, tmp_path, cfg, seed=6)
    assert a == b
    assert a != c
