"""Beam search parity with transformers 5.24 `generate(num_beams > 1)` (GenerationMixin._beam_search):
the same fp32 weights and prompt, identical returned sequences (best first) and beam indices, and
`sequences_scores` within 1e-4 on the tiny models (relative beyond magnitude 1: a negative
length_penalty multiplies the float32 sum by the length, e.g. -609.26) and 1e-3 on the default model
(its logits differ by ~1e-4 per step), over num_beams 2-8, length_penalty {-1, 0, 0.2, 1, 2},
early_stopping {True, False, "never"}, num_return_sequences, several EOS ids, stop strings and logits processors, on
tiny random models and on the default model.

presence_penalty / frequency_penalty / logit_bias are not transformers fields: the reference gets them
as a custom LogitsProcessor with OpenAI semantics over each beam's generated ids, which transformers
applies inside beams where mlxgp does.

Beam sampling (do_sample with num_beams > 1) cannot be compared token for token (torch's RNG); it is
checked for reproducibility under a seed, for score order, and for actually sampling (seeds differ)."""
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

SCORE_ATOL = 1e-4
# The default model's fp32 logits differ from transformers' by up to 1.3e-4 per step (docs/parity.md,
# the GGUF dequantized by each side), so a sum of 8-20 log-probs differs by a few 1e-4.
SCORE_ATOL_DEFAULT = 1e-3
OURS_ONLY = ("presence_penalty", "frequency_penalty", "logit_bias")
TINY_PROMPTS = [[1, 5, 9, 33, 100, 7], [1, 300, 301, 302], [1, 42, 42, 17, 250, 3, 77, 8, 91]]


def _openai_processor(cfg, prompt_len):
    import torch
    from transformers import LogitsProcessor

    presence, frequency = cfg.get("presence_penalty", 0.0), cfg.get("frequency_penalty", 0.0)
    bias = dict((t, b) for t, b in cfg.get("logit_bias", []))
    if not (presence or frequency or bias):
        return None

    class OpenAIPenalties(LogitsProcessor):
        def __call__(self, input_ids, scores):
            generated = input_ids[:, prompt_len:]
            counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
            scores = scores - (frequency * counts + presence * (counts > 0).to(scores.dtype))
            for token, b in bias.items():
                scores[:, token] += b
            return scores

    return OpenAIPenalties()


def _reference(model, prompt, cfg, tokenizer=None):
    """transformers beam search: [(tokens, score, beam_indices)] best first."""
    import torch
    from transformers import LogitsProcessorList

    hf = {k: v for k, v in cfg.items() if k not in OURS_ONLY}
    extra = {}
    proc = _openai_processor(cfg, len(prompt))
    if proc is not None:
        extra["logits_processor"] = LogitsProcessorList([proc])
    if tokenizer is not None:
        extra["tokenizer"] = tokenizer
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             do_sample=False, return_dict_in_generate=True, output_scores=True, **hf, **extra)
    res = []
    for i in range(out.sequences.shape[0]):
        bi = [b for b in out.beam_indices[i].tolist() if b >= 0]  # -1 pads the shorter hypotheses
        res.append((out.sequences[i, len(prompt):len(prompt) + len(bi)].tolist(), float(out.sequences_scores[i]), bi))
    return res


def _compare(name, ref, ours, failures, atol=SCORE_ATOL):
    if len(ref) != len(ours):
        failures.append(f"{name}: {len(ours)} sequences vs {len(ref)}")
        return 0.0
    worst = 0.0
    for i, ((tokens, score, bi), got) in enumerate(zip(ref, ours)):
        if got["token_ids"] != tokens or got["beam_indices"] != bi:
            failures.append(f"{name} #{i}: ours {got['token_ids']} {got['beam_indices']} vs ref {tokens} {bi}")
            continue
        d = abs(got["score"] - score) / max(1.0, abs(score))
        worst = max(worst, d)
        if d > atol:
            failures.append(f"{name} #{i}: score {got['score']} vs {score}")
    return worst


def _run_cases(run_mlxgp_json, model_path, cases, tmp_path, ref_fn, extra_args=()):
    import torch

    for i, (_, _, cfg) in enumerate(cases):
        (tmp_path / f"beam{i}.json").write_text(json.dumps(cfg))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # mlxgp runs alongside on a 2-core machine
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            ours = [pool.submit(run_mlxgp_json, "generate", "--model", model_path, "--dtype", "float32", "--input-ids",
                                ",".join(map(str, ids)), "--config", tmp_path / f"beam{i}.json", *extra_args)
                    for i, (_, ids, _) in enumerate(cases)]
            refs = [ref_fn(ids, cfg) for _, ids, cfg in cases]
            return [f.result()["sequences"] for f in ours], refs
    finally:
        torch.set_num_threads(threads)


def _tiny_cases():
    p0, p1, p2 = TINY_PROMPTS
    # The tiny random models rarely choose token 2 (their EOS): frequent tokens serve as EOS ids so
    # hypotheses finish at different lengths and the length penalty matters.
    return [
        ("llama", "nb2 default", p0, {"num_beams": 2, "max_new_tokens": 10}),
        ("llama", "nb4 lp1", p0, {"num_beams": 4, "max_new_tokens": 12, "eos_token_id": [96]}),
        ("llama", "nb3 lp0.2 early True nrs3", p0, {"num_beams": 3, "max_new_tokens": 10, "length_penalty": 0.2,
                                                    "early_stopping": True, "num_return_sequences": 3,
                                                    "eos_token_id": [96, 352]}),
        ("llama", "nb5 lp-1 never nrs2 3 eos", p0, {"num_beams": 5, "max_new_tokens": 16, "length_penalty": -1.0,
                                                     "early_stopping": "never", "num_return_sequences": 2,
                                                     "eos_token_id": [2, 11, 40]}),
        ("llama", "nb8 lp2 never", p1, {"num_beams": 8, "max_new_tokens": 12, "length_penalty": 2.0,
                                         "early_stopping": "never", "num_return_sequences": 8,
                                         "eos_token_id": [84, 146]}),
        ("llama", "nb6 lp0 False", p2, {"num_beams": 6, "max_new_tokens": 14, "length_penalty": 0.0,
                                         "num_return_sequences": 4, "eos_token_id": [96, 146]}),
        ("llama", "nb4 lp2 True", p2, {"num_beams": 4, "max_new_tokens": 14, "length_penalty": 2.0,
                                        "early_stopping": True, "eos_token_id": [84]}),
        ("llama", "nb7 lp0.2 never", p1, {"num_beams": 7, "max_new_tokens": 10, "length_penalty": 0.2,
                                           "early_stopping": "never", "num_return_sequences": 3,
                                           "eos_token_id": [146, 84, 96]}),
        ("llama", "repetition + ngram", p0, {"num_beams": 4, "max_new_tokens": 14, "repetition_penalty": 1.5,
                                              "no_repeat_ngram_size": 2, "num_return_sequences": 2}),
        ("llama", "min_new_tokens + suppress", p2, {"num_beams": 3, "max_new_tokens": 12, "min_new_tokens": 6,
                                                     "eos_token_id": [84, 96], "suppress_tokens": [146, 352]}),
        ("llama", "bad_words + sequence_bias", p1, {"num_beams": 4, "max_new_tokens": 10,
                                                     "bad_words_ids": [[84, 84], [146]],
                                                     "sequence_bias": [[[96], 1.5], [[84, 48], -2.0]],
                                                     "num_return_sequences": 2}),
        ("llama", "presence + frequency + logit_bias", p0, {"num_beams": 4, "max_new_tokens": 12,
                                                             "presence_penalty": 0.8, "frequency_penalty": 0.5,
                                                             "logit_bias": [[77, 2.0], [84, -1.0]],
                                                             "num_return_sequences": 3}),
        ("llama", "renormalize + forced_eos + max_length", p0, {"num_beams": 3, "max_length": 16,
                                                                 "forced_eos_token_id": [2],
                                                                 "renormalize_logits": True}),
        ("llama", "exp decay + min_length", p1, {"num_beams": 5, "max_new_tokens": 14, "eos_token_id": [96],
                                                  "exponential_decay_length_penalty": [3, 1.8], "min_length": 8,
                                                  "length_penalty": -1.0}),
        ("llama", "begin_suppress + remove_invalid", p2, {"num_beams": 2, "max_new_tokens": 8,
                                                           "begin_suppress_tokens": [84, 96],
                                                           "remove_invalid_values": True}),
        ("qwen3", "qwen3 nb4 lp1", p0, {"num_beams": 4, "max_new_tokens": 12, "num_return_sequences": 4}),
        ("qwen3", "qwen3 nb6 lp0.2 True", p1, {"num_beams": 6, "max_new_tokens": 12, "length_penalty": 0.2,
                                                "early_stopping": True, "num_return_sequences": 2}),
        ("qwen3", "qwen3 nb3 never lp2 + repetition", p2, {"num_beams": 3, "max_new_tokens": 12,
                                                           "early_stopping": "never", "length_penalty": 2.0,
                                                           "repetition_penalty": 1.3}),
        ("mistral", "mistral nb5 lp0 nrs5", p0, {"num_beams": 5, "max_new_tokens": 10, "length_penalty": 0.0,
                                                  "num_return_sequences": 5}),
        ("mistral", "mistral nb8 lp-1 True", p2, {"num_beams": 8, "max_new_tokens": 10, "length_penalty": -1.0,
                                                   "early_stopping": True, "num_return_sequences": 2}),
        ("qwen2", "qwen2 nb4 never lp1 + ngram", p1, {"num_beams": 4, "max_new_tokens": 12,
                                                      "early_stopping": "never", "no_repeat_ngram_size": 3,
                                                      "num_return_sequences": 2}),
    ]


@pytest.fixture(scope="module")
def tiny_beam_models(tmp_path_factory):
    models = {}
    for arch in ("llama", "qwen3", "mistral", "qwen2"):
        model, folder = tiny_models.make_tiny_model(arch, tmp_path_factory.mktemp(f"beam_{arch}"))
        models[arch] = (model, folder)
    return models


def test_beam_search_parity_tiny(tiny_beam_models, run_mlxgp_json, tmp_path):
    cases = _tiny_cases()
    failures, worst, found = [], 0.0, {}
    for arch in tiny_beam_models:
        sel = [(name, ids, cfg) for a, name, ids, cfg in cases if a == arch]
        model, folder = tiny_beam_models[arch]
        ours, refs = _run_cases(run_mlxgp_json, folder, sel, tmp_path,
                                lambda ids, cfg: _reference(model, ids, cfg))
        for (name, _, _), ref, got in zip(sel, refs, ours):
            worst = max(worst, _compare(name, ref, got, failures))
            found[name] = {s["finish_reason"] for s in got}
    n = len(cases)
    print(f"\nbeam search parity (tiny models): {n - len({f.split(':')[0].split(' #')[0] for f in failures})}/{n} "
          f"configs identical, max relative |score diff| {worst:.3g}")
    assert not failures, "\n".join(failures)
    # The configurations really exercise finished hypotheses of several lengths, not only the budget.
    assert sum("eos" in r for r in found.values()) >= 5, found


def _default_cases(tok):
    chat = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                   add_generation_prompt=True, tokenize=True)
    chat = list(chat["input_ids"] if hasattr(chat, "keys") else chat)
    fox, code = tok("The quick brown fox").input_ids, tok("def fibonacci(n):\n    ").input_ids
    story = tok("Once upon a time, there was").input_ids
    return [
        ("default chat nb4 lp1", chat, {"num_beams": 4, "max_new_tokens": 12, "num_return_sequences": 2}),
        ("default chat nb3 lp0.2 True", chat, {"num_beams": 3, "max_new_tokens": 14, "length_penalty": 0.2,
                                               "early_stopping": True, "num_return_sequences": 3}),
        ("default chat nb2 never lp-1", chat, {"num_beams": 2, "max_new_tokens": 12, "early_stopping": "never",
                                               "length_penalty": -1.0}),
        ("default story nb8 lp0 never", story, {"num_beams": 8, "max_new_tokens": 6, "length_penalty": 0.0,
                                                "early_stopping": "never", "num_return_sequences": 4}),
        ("default fox nb6 lp2 + repetition", fox, {"num_beams": 6, "max_new_tokens": 10, "length_penalty": 2.0,
                                                   "repetition_penalty": 1.2, "num_return_sequences": 3}),
        ("default code nb4 ngram + eos list", code, {"num_beams": 4, "max_new_tokens": 12,
                                                     "no_repeat_ngram_size": 3, "eos_token_id": [2, 198]}),
        ("default story nb5 stop strings", story, {"num_beams": 5, "max_new_tokens": 12, "stop_strings": [".", ","],
                                                   "num_return_sequences": 2}),
        ("default chat min_new_tokens + presence", chat, {"num_beams": 4, "max_new_tokens": 14, "min_new_tokens": 8,
                                                          "presence_penalty": 0.6, "length_penalty": 0.2}),
    ]


def test_beam_search_parity_default_model(hf_default, default_gguf, run_mlxgp_json, tmp_path):
    model, tok = hf_default
    cases = _default_cases(tok)
    ours, refs = _run_cases(run_mlxgp_json, default_gguf, cases, tmp_path,
                            lambda ids, cfg: _reference(model, ids, cfg, tok))
    failures, worst = [], 0.0
    reasons = set()
    for (name, _, _), ref, got in zip(cases, refs, ours):
        worst = max(worst, _compare(name, ref, got, failures, SCORE_ATOL_DEFAULT))
        reasons |= {s["finish_reason"] for s in got}
    print(f"\nbeam search parity (default model): {len(cases)} configs, max relative |score diff| {worst:.3g}, "
          f"finish reasons {sorted(reasons)}")
    assert not failures, "\n".join(failures)
    assert "stop_string" in reasons and "eos" in reasons


def test_beam_sampling_seeded(tiny_beam_models, run_mlxgp_json):
    """Beam sampling draws 2*num_beams continuations without replacement from softmax(accumulated
    scores) as transformers does with torch.multinomial; torch's RNG cannot be reproduced, so: the
    same seed gives the same result, the hypotheses come best first, and different seeds explore."""
    _, folder = tiny_beam_models["llama"]
    args = ["generate", "--model", folder, "--dtype", "float32", "--input-ids", "1,5,9,33,100,7", "--num-beams", "4",
            "--do-sample", "--top-k", "0", "--temperature", "1.5", "--max-new-tokens", "12",
            "--num-return-sequences", "3"]
    a = run_mlxgp_json(*args, "--seed", "11")
    b = run_mlxgp_json(*args, "--seed", "11")
    assert a["sequences"] == b["sequences"]
    outs = set()
    for seed in range(5):
        got = run_mlxgp_json(*args, "--seed", str(seed))["sequences"]
        scores = [s["score"] for s in got]
        assert scores == sorted(scores, reverse=True)
        assert all(len(s["beam_indices"]) == len(s["token_ids"]) for s in got)
        outs.add(tuple(got[0]["token_ids"]))
    greedy_beam = run_mlxgp_json(*args[:-6], "--max-new-tokens", "12", "--num-return-sequences", "3")["sequences"]
    outs.add(tuple(greedy_beam[0]["token_ids"]))
    assert len(outs) >= 3, outs


def test_beam_errors(tiny_beam_models, run_mlxgp):
    _, folder = tiny_beam_models["llama"]
    base = ["generate", "--model", folder, "--input-ids", "1,5,9", "--max-new-tokens", "4"]
    for extra, needle in [(["--num-beams", "2", "--num-return-sequences", "3"], "[config]"),
                          (["--num-beams", "4", "--num-beam-groups", "3"], "[config]"),
                          (["--num-beams", "2", "--guidance-scale", "2"], "[generate]"),
                          (["--num-beams", "2", "--output-scores"], "[generate]")]:
        proc = run_mlxgp(*base, *extra, check=False)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(needle), proc.stderr


def test_beam_search_with_steering_hook(tiny_beam_models, run_mlxgp_json, tmp_path):
    """Hooks act inside beams: residual steering (alpha * v added to a layer's output at every position)
    against a torch forward hook doing the same during transformers' beam search."""
    import numpy as np
    import torch
    from safetensors.numpy import save_file

    model, folder = tiny_beam_models["llama"]
    v = (np.random.default_rng(3).standard_normal(model.config.hidden_size) * 0.5).astype(np.float32)
    save_file({"steering_vector": v}, str(tmp_path / "v.safetensors"))
    layer, alpha = 1, 1.5
    prompt = TINY_PROMPTS[0]
    cfg = {"num_beams": 4, "max_new_tokens": 10, "num_return_sequences": 2, "eos_token_id": [96]}

    def add(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        h = h + alpha * torch.tensor(v)
        return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h

    handle = model.model.layers[layer].register_forward_hook(add)
    try:
        ref = _reference(model, prompt, cfg)
    finally:
        handle.remove()
    plain = _reference(model, prompt, cfg)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    got = run_mlxgp_json("generate", "--model", folder, "--dtype", "float32", "--input-ids", ",".join(map(str, prompt)),
                         "--config", tmp_path / "cfg.json", "--steer", tmp_path / "v.safetensors", "--steer-layer",
                         layer, "--steer-alpha", alpha)["sequences"]
    failures = []
    _compare("steered beams", ref, got, failures)
    assert not failures, "\n".join(failures)
    assert [r[0] for r in ref] != [p[0] for p in plain]  # the hook changes the result


def test_beam_text_output_prints_the_best_hypothesis(default_gguf, run_mlxgp, run_mlxgp_json):
    """Without --json, beam search (not streamed) prints the best sequence's text once it is done."""
    args = ("generate", "--model", default_gguf, "--prompt", "The cat", "--num-beams", "3", "--max-new-tokens", "8")
    text = run_mlxgp(*args).stdout
    best = run_mlxgp_json(*args)["sequences"][0]["text"]
    assert best and text == best + "\n"
