"""Speculative sampling is exact: every token it emits is distributed as the target's processed
distribution given the tokens before it. A tiny random llama with a 64-token vocabulary generates one
long sequence with mlxgp speculative sampling; transformers then computes the target's logits at every
position of that sequence in one forward, and its own logits processors / warpers give the processed
distribution p_t at each step. Under the claim, the randomized probability integral transform
u_t = F_t(x_t - 1) + v_t * p_t(x_t) (v_t uniform) is i.i.d. uniform on [0, 1) (each u_t is uniform
given the past), which a chi-square test on 20 bins checks. The same tokens judged against the raw
(unprocessed) distributions must fail the test, so the test has power. Fixed seeds: deterministic."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

N_TOKENS = 3000
PROMPT = [1, 5, 9, 17]
BINS = 20
P_MIN = 1e-3

CONFIGS = [
    ("self-draft, temperature + top_k + repetition_penalty",
     {"temperature": 0.6, "top_k": 20, "repetition_penalty": 1.3}, {"draft_layers": 1}),
    ("draft checkpoint, temperature + top_p", {"temperature": 0.5, "top_k": 0, "top_p": 0.9}, {"draft_model": True}),
    ("exact-match (mlx-lm rule), min_p", {"temperature": 0.7, "top_k": 0, "min_p": 0.1},
     {"draft_layers": 2, "speculative_exact_match": True}),
]


def _tiny(out_dir, seed, layers):
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                                   rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
                                   rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.15)
            elif "norm" in name:
                p.uniform_(0.5, 1.5)
    model.eval()
    model.save_pretrained(out_dir)
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("spec_stats")
    target = _tiny(root / "target", seed=3, layers=3)
    # The draft checkpoint: the target's first 2 layers saved as their own folder (an unrelated random
    # model would hardly ever agree with the target).
    from safetensors.numpy import load_file, save_file

    (root / "draft").mkdir()
    cfg = json.loads((root / "target" / "config.json").read_text())
    cfg["num_hidden_layers"] = 2
    (root / "draft" / "config.json").write_text(json.dumps(cfg))
    weights = load_file(root / "target" / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("model.layers.2.")},
              root / "draft" / "model.safetensors", metadata={"format": "pt"})
    return target, root / "target", root / "draft"


def _processors(gen_cfg):
    import transformers as tf

    procs = tf.LogitsProcessorList()
    if gen_cfg.get("repetition_penalty"):
        procs.append(tf.RepetitionPenaltyLogitsProcessor(gen_cfg["repetition_penalty"]))
    procs.append(tf.TemperatureLogitsWarper(gen_cfg["temperature"]))
    if gen_cfg.get("top_k"):
        procs.append(tf.TopKLogitsWarper(gen_cfg["top_k"]))
    if gen_cfg.get("top_p"):
        procs.append(tf.TopPLogitsWarper(gen_cfg["top_p"]))
    if gen_cfg.get("min_p"):
        procs.append(tf.MinPLogitsWarper(gen_cfg["min_p"]))
    return procs


def _step_probs(model, tokens, gen_cfg):
    """(processed, raw) next-token probabilities [n, V] at each generated position of `tokens`."""
    import torch

    ids = torch.tensor([PROMPT + tokens])
    procs = _processors(gen_cfg)
    with torch.no_grad():
        logits = model(ids).logits[0].double()
        n0 = len(PROMPT)
        proc, raw = [], []
        for t in range(len(tokens)):
            row = logits[n0 - 1 + t][None]
            proc.append(torch.softmax(procs(ids[:, :n0 + t], row.float()).double(), -1)[0])
            raw.append(torch.softmax(row, -1)[0])
    return torch.stack(proc).numpy(), torch.stack(raw).numpy()


def _pit_p_value(tokens, probs, rng):
    """Chi-square p-value of the randomized PIT values of `tokens` under `probs` [n, V] on BINS bins."""
    import torch

    x = np.array(tokens)
    rows = np.arange(len(x))
    below = np.concatenate([np.zeros((len(x), 1)), np.cumsum(probs, 1)], 1)[rows, x]
    u = below + rng.random(len(x)) * probs[rows, x]
    counts = np.histogram(np.clip(u, 0, 1 - 1e-12), bins=BINS, range=(0, 1))[0]
    e = len(x) / BINS
    stat = float(((counts - e) ** 2 / e).sum())
    dof = BINS - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                         torch.tensor(stat / 2, dtype=torch.float64))), probs[rows, x]


@pytest.mark.parametrize("name,sampling,spec", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_speculative_sampling_follows_the_target_distribution(models, run_mlxgp_json, tmp_path, name, sampling, spec):
    model, target_dir, draft_dir = models
    spec = dict(spec)
    if spec.pop("draft_model", False):
        spec["draft_model"] = str(draft_dir)
    cfg = {**sampling, **spec, "do_sample": True, "use_speculative": True, "num_draft_tokens": 3,
           "max_new_tokens": N_TOKENS, "seed": 11}
    path = tmp_path / "gen.json"
    path.write_text(json.dumps(cfg))
    out = run_mlxgp_json("generate", "--model", target_dir, "--dtype", "float32", "--ignore-eos",
                         "--input-ids", ",".join(map(str, PROMPT)), "--config", path)
    tokens = out["sequences"][0]["token_ids"]
    stats = out["stats"]["speculative"]
    assert len(tokens) == N_TOKENS
    # Candidates were really accepted and rejected (both paths of the rule ran).
    assert 0.05 < stats["acceptance_rate"] < 0.98, stats
    probs, raw = _step_probs(model, tokens, sampling)
    rng = np.random.default_rng(0)
    p, chosen = _pit_p_value(tokens, probs, rng)
    p_raw, _ = _pit_p_value(tokens, raw, rng)
    print(f"{name}: acceptance {stats['acceptance_rate']:.2f}, PIT chi2 p {p:.3g} (raw distribution: {p_raw:.2g})")
    assert (chosen > 0).all(), "a token outside the processed support was emitted"
    assert p > P_MIN
    assert p_raw < 1e-6
