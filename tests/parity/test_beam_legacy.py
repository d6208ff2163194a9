"""Diverse (group) beam search and constrained beam search (force_words_ids) against transformers
4.56.2, the last release that ships them (`_group_beam_search` + BeamSearchScorer +
HammingDiversityLogitsProcessor, `_constrained_beam_search` + ConstrainedBeamSearchScorer with
PhrasalConstraint / DisjunctiveConstraint): transformers 5.x removed both. scripts/setup.sh installs
4.56.2 into .cache/hf-legacy; the reference runs in a subprocess with PYTHONPATH pointing there, using
the venv's torch (legacy_beam_reference.py). Same fp32 weights and prompts; returned sequences
must be identical (the reference pads shorter ones), beam indices identical where the reference
returns them, sequences_scores within 1e-4 (tiny models) / 1e-3 (default model, whose logits differ by
~1e-4 per step).

Per-step outputs (output_scores / output_logits / output_logprobs): each returned sequence's per-token
processed score (constrained: with the beam score added, as 4.56 records it), raw logit and log-probability
equal, within the same tolerance, the reference's `scores` / `logits` at row beam_indices[t] of step t
(compute_transition_scores). 4.56's constrained search returns no beam indices: ours (of identical
sequences) pick the rows. Group beams: 4.56's beam indices are group-relative (rows g * group_size +
index), and an EOS hypothesis of a later group carries group 0's history; there each step only has to
match some row of one group. One constrained case runs classifier-free guidance inside the beams."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LEGACY = Path(os.environ.get("MLXGP_CACHE", ROOT / ".cache")) / "hf-legacy"
PROMPTS = [[1, 5, 9, 33, 100, 7], [1, 300, 301, 302], [1, 42, 42, 17, 250, 3, 77, 8, 91]]
OUTPUTS = {"output_scores": True, "output_logits": True, "output_logprobs": True}


def _legacy_reference(folder, cases):
    assert (LEGACY / "transformers").is_dir(), f"transformers 4.56.2 missing at {LEGACY}: run scripts/setup.sh"
    env = dict(os.environ, PYTHONPATH=str(LEGACY), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    req = {"model": str(folder), "cases": [{"prompt": p, "config": c} for _, p, c in cases]}
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "legacy_beam_reference.py")],
                          input=json.dumps(req), capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_ours(run_mlxgp_json, model, cases, tmp_path):
    outs = []
    for i, (_, prompt, cfg) in enumerate(cases):
        path = tmp_path / f"legacy{i}.json"
        path.write_text(json.dumps(cfg))
        outs.append(run_mlxgp_json("generate", "--model", model, "--dtype", "float32", "--input-ids",
                                   ",".join(map(str, prompt)), "--config", path)["sequences"])
    return outs


def _step_diff(cfg, seq, steps, bi):
    """Worst |diff| of a sequence's per-token (score, logit, logprob) against the reference's rows."""
    groups = cfg.get("num_beam_groups", 1)
    gs = cfg["num_beams"] // groups
    ours = list(zip(seq["scores"], seq["logits"], seq["logprobs"]))

    def diff(t, r):
        return max(abs(a - b) for a, b in zip(ours[t], steps[t][r]))

    # Row g * group_size + beam_indices[t] (compute_transition_scores's rows for groups == 1 or group 0).
    found = [max(diff(t, g * gs + b) for t, b in enumerate(bi[:len(ours)])) for g in range(groups)]
    # A later group's EOS hypothesis: its indices are group 0's history (one step longer than its tokens).
    if seq["finish_reason"] == "eos":
        found += [max(min(diff(t, g * gs + r) for r in range(gs)) for t in range(len(ours))) for g in range(1, groups)]
    return min(found)


def _compare(cases, refs, ours, atol):
    """(failures, worst relative score diff, worst per-step output |diff|)."""
    failures, worst, step_worst = [], 0.0, 0.0
    for (name, _, cfg), ref, got in zip(cases, refs, ours):
        eos = cfg.get("eos_token_id", [2])
        eos = [eos] if isinstance(eos, int) else eos
        fill = set(eos) | ({ref["pad"]} if ref["pad"] is not None else set())
        if len(got) != len(ref["sequences"]):
            failures.append(f"{name}: {len(got)} sequences vs {len(ref['sequences'])}")
            continue
        for i, (seq, row) in enumerate(zip(got, ref["sequences"])):
            n = len(seq["token_ids"])
            if row[:n] != seq["token_ids"] or any(t not in fill for t in row[n:]):
                failures.append(f"{name} #{i}: ours {seq['token_ids']} vs ref {row}")
                continue
            bi = seq["beam_indices"]  # 4.56's constrained beam search returns none: ours pick the rows
            if ref["beam_indices"] is not None:
                bi = [b for b in ref["beam_indices"][i] if b >= 0]
                if bi != seq["beam_indices"]:
                    failures.append(f"{name} #{i}: beam indices {seq['beam_indices']} vs ref {bi}")
                    continue
            if "steps" in ref:
                d = _step_diff(cfg, seq, ref["steps"][i], bi)
                step_worst = max(step_worst, d)
                if d > atol:
                    failures.append(f"{name} #{i}: per-step outputs max |diff| {d:.3g}")
                # Group beams: the gathered rows are the hypothesis's own, so its scores sum to its score.
                total = sum(seq["scores"]) / len(seq["scores"]) ** cfg.get("length_penalty", 1.0)
                if cfg.get("num_beam_groups", 1) > 1 and abs(total - seq["score"]) > atol:
                    failures.append(f"{name} #{i}: per-token scores sum to {total}, score {seq['score']}")
            d = abs(seq["score"] - ref["scores"][i]) / max(1.0, abs(ref["scores"][i]))
            worst = max(worst, d)
            if d > atol:
                failures.append(f"{name} #{i}: score {seq['score']} vs {ref['scores'][i]}")
    return failures, worst, step_worst


def _export_fp32(model, folder):
    """The GGUF-loaded reference model as a plain fp32 HF folder for 4.56 (save_pretrained refuses
    GGUF-quantized models; the weights are already dequantized)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    (folder / "config.json").write_text(json.dumps(cfg))
    tiny_models.legacy_rope_config(folder)
    return folder


@pytest.fixture(scope="module")
def legacy_tiny(tmp_path_factory):
    """Tiny llama and qwen3 with the pre-5.x rope layout, which both 4.56 and mlxgp read."""
    out = {}
    for arch in ("llama", "qwen3"):
        _, folder = tiny_models.make_tiny_model(arch, tmp_path_factory.mktemp(f"legacy_{arch}"))
        tiny_models.legacy_rope_config(folder)
        out[arch] = folder
    return out


def _tiny_cases():
    p0, p1, p2 = PROMPTS
    return {
        "llama": [
            ("group 4/2 div1", p0, {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0,
                                    "max_new_tokens": 8, "num_return_sequences": 2}),
            ("group 6/3 div0.5 eos lp0.5", p0, {"num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 0.5,
                                                "max_new_tokens": 10, "num_return_sequences": 3,
                                                "eos_token_id": [96, 444], "length_penalty": 0.5}),
            ("group 8/4 div2 True", p1, {"num_beams": 8, "num_beam_groups": 4, "diversity_penalty": 2.0,
                                         "max_new_tokens": 10, "early_stopping": True, "eos_token_id": [84],
                                         "num_return_sequences": 4}),
            ("group 4/4 never lp-1", p2, {"num_beams": 4, "num_beam_groups": 4, "diversity_penalty": 0.7,
                                          "max_new_tokens": 8, "early_stopping": "never", "length_penalty": -1.0,
                                          "eos_token_id": [96]}),
            ("group 6/2 + repetition", p2, {"num_beams": 6, "num_beam_groups": 2, "diversity_penalty": 1.5,
                                            "max_new_tokens": 10, "repetition_penalty": 1.3,
                                            "num_return_sequences": 2}),
            ("constrained phrasal", p0, {"num_beams": 4, "force_words_ids": [[33, 34]], "max_new_tokens": 8}),
            ("constrained disjunctive", p0, {"num_beams": 4, "force_words_ids": [[[33, 34], [40], [35, 36]]],
                                             "max_new_tokens": 10, "eos_token_id": [352],
                                             "num_return_sequences": 2}),
            ("constrained two + eos True", p0, {"num_beams": 3, "force_words_ids": [[33, 34], [77]],
                                                "max_new_tokens": 12, "eos_token_id": [96], "early_stopping": True}),
            ("constrained branching disjunctive", p1, {"num_beams": 5, "force_words_ids": [[[50, 51, 52], [50, 60],
                                                                                            [70]], [9]],
                                                       "max_new_tokens": 12, "eos_token_id": [84, 146],
                                                       "num_return_sequences": 3, "length_penalty": 0.2}),
            ("constrained never lp2 + ngram", p2, {"num_beams": 6, "force_words_ids": [[300, 301]],
                                                   "max_new_tokens": 10, "early_stopping": "never",
                                                   "length_penalty": 2.0, "no_repeat_ngram_size": 2}),
            ("group 4/2 outputs eos", p0, {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0,
                                           "max_new_tokens": 10, "num_return_sequences": 4, "eos_token_id": [96],
                                           **OUTPUTS}),
            ("group 6/3 outputs 2 eos lp0.5", p1, {"num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 0.5,
                                                   "max_new_tokens": 10, "num_return_sequences": 6,
                                                   "eos_token_id": [84, 146], "length_penalty": 0.5, **OUTPUTS}),
            ("group 4/4 outputs + repetition", p2, {"num_beams": 4, "num_beam_groups": 4, "diversity_penalty": 0.7,
                                                    "max_new_tokens": 8, "repetition_penalty": 1.3,
                                                    "num_return_sequences": 4, "eos_token_id": [96], **OUTPUTS}),
            ("constrained outputs eos", p0, {"num_beams": 4, "force_words_ids": [[33, 34]], "max_new_tokens": 10,
                                             "eos_token_id": [96], "num_return_sequences": 2, **OUTPUTS}),
            ("constrained + guidance 1.5 outputs", p2, {"num_beams": 4, "force_words_ids": [[300, 301]],
                                                        "max_new_tokens": 10, "guidance_scale": 1.5,
                                                        "eos_token_id": [96], "num_return_sequences": 2, **OUTPUTS}),
            ("constrained disjunctive outputs", p1, {"num_beams": 5, "force_words_ids": [[[50, 51, 52], [50, 60],
                                                                                         [70]], [9]],
                                                     "max_new_tokens": 12, "eos_token_id": [84, 146],
                                                     "num_return_sequences": 3, "length_penalty": 0.2, **OUTPUTS}),
        ],
        "qwen3": [
            ("qwen3 group 4/2", p1, {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0,
                                     "max_new_tokens": 10, "num_return_sequences": 4}),
            ("qwen3 constrained", p2, {"num_beams": 4, "force_words_ids": [[5, 6, 7]], "max_new_tokens": 10,
                                       "num_return_sequences": 2}),
            ("qwen3 group 6/3 outputs", p0, {"num_beams": 6, "num_beam_groups": 3, "diversity_penalty": 0.8,
                                             "max_new_tokens": 10, "num_return_sequences": 6, **OUTPUTS}),
        ],
    }


def test_group_and_constrained_beams_tiny(legacy_tiny, run_mlxgp_json, tmp_path):
    failures, worst, step_worst, total, with_steps = [], 0.0, 0.0, 0, 0
    for arch, cases in _tiny_cases().items():
        refs = _legacy_reference(legacy_tiny[arch], cases)
        ours = _run_ours(run_mlxgp_json, legacy_tiny[arch], cases, tmp_path)
        f, w, sw = _compare(cases, refs, ours, 1e-4)
        failures += f
        worst, step_worst = max(worst, w), max(step_worst, sw)
        total += len(cases)
        with_steps += sum(len(got) for (_, _, cfg), got in zip(cases, ours) if cfg.get("output_logprobs"))
    print(f"\ngroup/constrained beam parity vs transformers 4.56.2 (tiny): {total} configs, "
          f"{len(failures)} mismatches, max relative |score diff| {worst:.3g}; per-step outputs of {with_steps} "
          f"sequences, max |diff| {step_worst:.3g}")
    assert not failures, "\n".join(failures)


def test_seed_example_default_model(hf_default, default_gguf, run_mlxgp_json, tmp_path):
    """The seed's example: num_beams=4, early_stopping=True, length_penalty=0.2, force_words_ids=[ids of
    " cat"], min_new_tokens=8, bad_words_ids=[[eos]], suppress_tokens=[eos], from the CLI (--prompt and
    flags), against transformers 4.56.2 on the same fp32 weights."""
    model, tok = hf_default
    folder = _export_fp32(model, tmp_path / "smollm2-fp32")
    eos = tok.eos_token_id
    cat = tok(" cat", add_special_tokens=False).input_ids
    prompts = ["My favourite animal is"]
    cases = []
    for text in prompts:
        ids = tok(text).input_ids
        cases.append((f"seed example: {text}", ids, {"num_beams": 4, "early_stopping": True, "length_penalty": 0.2,
                                                     "force_words_ids": [cat], "min_new_tokens": 8,
                                                     "bad_words_ids": [[eos]], "suppress_tokens": [eos],
                                                     "max_new_tokens": 20}))
    cases.append(("group 4/2 chat", tok("The capital of France is").input_ids,
                  {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0, "max_new_tokens": 8,
                   "num_return_sequences": 2}))
    refs = _legacy_reference(folder, cases)
    ours = []
    for text in prompts:  # the CLI flags, as a user would type them
        ours.append(run_mlxgp_json("generate", "--model", default_gguf, "--dtype", "float32", "--prompt", text,
                                   "--num-beams", "4", "--early-stopping", "true", "--length-penalty", "0.2",
                                   "--force-words-ids", ",".join(map(str, cat)), "--min-new-tokens", "8",
                                   "--bad-words-ids", str(eos), "--suppress-tokens", str(eos),
                                   "--max-new-tokens", "20")["sequences"])
    ours += _run_ours(run_mlxgp_json, default_gguf, cases[len(prompts):], tmp_path)
    failures, worst, _ = _compare(cases, refs, ours, 1e-3)
    print(f"\nseed example vs transformers 4.56.2 (default model): {len(cases)} configs, {len(failures)} mismatches, "
          f"max relative |score diff| {worst:.3g}; texts: {[s[0]['text'] for s in ours[:len(prompts)]]}")
    assert not failures, "\n".join(failures)
    for seqs in ours[:len(prompts)]:
        assert all(" cat" in s["text"] for s in seqs)
