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

Per-step outputs (output_scores / output_logits / output_logprobs): each returned sequence's per-token
processed score, raw logit and log-probability against transformers' compute_transition_scores(sequences,
scores | logits, beam_indices[, normalize_logits=True]), within 1e-4 (tiny) / 1e-3 (default model).
Classifier-free guidance inside beams (its unconditional cache fed each row's last token, never
reordered) against the same, a negative prompt given to transformers repeated to num_beams rows.

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


OUTPUT_FLAGS = {"output_scores": True, "output_logits": True, "output_logprobs": True}


def _reference_outputs(model, prompt, cfg, negative=None, tokenizer=None):
    """transformers beam search with per-step outputs: ([(tokens, score, beam_indices)], [{scores, logits,
    logprobs}]) per returned sequence, from compute_transition_scores."""
    import torch

    hf = {k: v for k, v in cfg.items() if k not in OUTPUT_FLAGS}
    extra = {"tokenizer": tokenizer} if tokenizer is not None else {}
    if negative is not None:  # mlxgp shares the negative prompt across beams; transformers needs it per row
        extra["negative_prompt_ids"] = torch.tensor([negative] * cfg["num_beams"])
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             do_sample=False, return_dict_in_generate=True, output_scores=True, output_logits=True,
                             **hf, **extra)
        seqs, bi = out.sequences, out.beam_indices
        per_step = {"scores": model.compute_transition_scores(seqs, out.scores, bi),
                    "logits": model.compute_transition_scores(seqs, out.logits, bi),
                    "logprobs": model.compute_transition_scores(seqs, out.scores, bi, normalize_logits=True)}
    res, outs = [], []
    for i in range(seqs.shape[0]):
        b = [x for x in bi[i].tolist() if x >= 0]
        res.append((seqs[i, len(prompt):len(prompt) + len(b)].tolist(), float(out.sequences_scores[i]), b))
        outs.append({k: v[i, :len(b)].tolist() for k, v in per_step.items()})
    return res, outs


def _compare_outputs(name, ref, ours, failures, atol):
    """Per-token scores / logits / logprobs of sequences whose tokens already match: the worst |diff| per key."""
    worst = {"scores": 0.0, "logits": 0.0, "logprobs": 0.0}
    for i, (want, got) in enumerate(zip(ref, ours)):
        for key in worst:
            if got.get(key) is None or len(got[key]) != len(want[key]):
                failures.append(f"{name} #{i}: {key} {got.get(key)} vs {want[key]}")
                continue
            d = max(abs(a - b) for a, b in zip(got[key], want[key]))
            worst[key] = max(worst[key], d)
            if d > atol:
                failures.append(f"{name} #{i}: {key} max |diff| {d:.3g}: {got[key]} vs {want[key]}")
    return worst


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
    """cases: (name, ids, cfg[, extra CLI args[, extra reference args]])."""
    import torch

    for i, (_, _, cfg, *_) in enumerate(cases):
        (tmp_path / f"beam{i}.json").write_text(json.dumps(cfg))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # mlxgp runs alongside on a 2-core machine
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            ours = [pool.submit(run_mlxgp_json, "generate", "--model", model_path, "--dtype", "float32", "--input-ids",
                                ",".join(map(str, c[1])), "--config", tmp_path / f"beam{i}.json", *extra_args,
                                *(c[3] if len(c) > 3 else ()))
                    for i, c in enumerate(cases)]
            refs = [ref_fn(c[1], c[2], *c[4:]) for c in cases]
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


def _negative_args(neg):
    return ["--negative-input-ids", ",".join(map(str, neg))] if neg else []


def _check_outputs(cases, refs, ours, atol):
    """(failures, worst per-token |diff| per output, worst relative score diff, sequences compared)."""
    failures, worst, score_worst, n = [], {"scores": 0.0, "logits": 0.0, "logprobs": 0.0}, 0.0, 0
    for (name, *_), (ref, ref_out), got in zip(cases, refs, ours):
        before = len(failures)
        score_worst = max(score_worst, _compare(name, ref, got, failures, atol))
        if len(failures) == before:  # same tokens: compare the per-step outputs
            for k, v in _compare_outputs(name, ref_out, got, failures, atol).items():
                worst[k] = max(worst[k], v)
            n += len(got)
    return failures, worst, score_worst, n


def _output_cases():
    p0, p1, p2 = TINY_PROMPTS
    f = OUTPUT_FLAGS
    return [
        ("llama", "outputs nb4 eos nrs4", p0, {"num_beams": 4, "max_new_tokens": 12, "eos_token_id": [96],
                                               "num_return_sequences": 4, **f}),
        ("llama", "outputs nb3 lp0.2 True 2 eos", p0, {"num_beams": 3, "max_new_tokens": 10, "length_penalty": 0.2,
                                                       "early_stopping": True, "num_return_sequences": 3,
                                                       "eos_token_id": [96, 352], **f}),
        ("llama", "outputs nb5 lp-1 never 3 eos", p0, {"num_beams": 5, "max_new_tokens": 16, "length_penalty": -1.0,
                                                       "early_stopping": "never", "num_return_sequences": 2,
                                                       "eos_token_id": [2, 11, 40], **f}),
        ("llama", "outputs repetition + ngram + min_new", p2, {"num_beams": 4, "max_new_tokens": 12,
                                                               "repetition_penalty": 1.5, "no_repeat_ngram_size": 2,
                                                               "min_new_tokens": 5, "eos_token_id": [84, 96],
                                                               "num_return_sequences": 2, **f}),
        ("llama", "outputs bad_words + sequence_bias + renormalize", p1, {
            "num_beams": 4, "max_new_tokens": 10, "bad_words_ids": [[84, 84], [146]],
            "sequence_bias": [[[96], 1.5], [[84, 48], -2.0]], "renormalize_logits": True, "num_return_sequences": 2,
            **f}),
        ("llama", "guidance 1.5 nb4", p0, {"num_beams": 4, "max_new_tokens": 10, "guidance_scale": 1.5,
                                           "eos_token_id": [96], "num_return_sequences": 2, **f}),
        ("llama", "guidance 0.5 + negative prompt nb3", p1, {"num_beams": 3, "max_new_tokens": 10,
                                                             "guidance_scale": 0.5, "num_return_sequences": 3, **f},
         [5, 9, 100, 7]),
        ("llama", "guidance 3 + sequence_bias + repetition", p2, {
            "num_beams": 5, "max_new_tokens": 12, "guidance_scale": 3.0, "sequence_bias": [[[96], 1.5]],
            "repetition_penalty": 1.3, "eos_token_id": [96, 146], "num_return_sequences": 2, **f}),
        ("qwen3", "qwen3 outputs nb6 lp2 never", p1, {"num_beams": 6, "max_new_tokens": 10, "length_penalty": 2.0,
                                                      "early_stopping": "never", "num_return_sequences": 3, **f}),
        ("qwen3", "qwen3 guidance 2 + negative prompt", p0, {"num_beams": 4, "max_new_tokens": 10,
                                                             "guidance_scale": 2.0, "num_return_sequences": 2, **f},
         [11, 12]),
    ]


def test_beam_outputs_and_guidance_tiny(tiny_beam_models, run_mlxgp_json, tmp_path):
    """Per-token scores / logits / logprobs of every returned sequence against compute_transition_scores,
    and classifier-free guidance inside beams (identical tokens, beam indices and scores)."""
    failures, worst, score_worst, n, total = [], {}, 0.0, 0, 0
    for arch, (model, folder) in tiny_beam_models.items():
        sel = [(name, ids, cfg, _negative_args(neg[0] if neg else None), neg[0] if neg else None)
               for a, name, ids, cfg, *neg in _output_cases() if a == arch]
        if not sel:
            continue
        ours, refs = _run_cases(run_mlxgp_json, folder, sel, tmp_path,
                                lambda ids, cfg, neg: _reference_outputs(model, ids, cfg, neg))
        f, w, sw, k = _check_outputs(sel, refs, ours, SCORE_ATOL)
        failures += f
        worst = {key: max(worst.get(key, 0.0), v) for key, v in w.items()}
        score_worst, n, total = max(score_worst, sw), n + k, total + len(sel)
    print(f"\nbeam per-step outputs + guidance (tiny models): {total} configs, {n} sequences, max |diff| "
          + ", ".join(f"{k} {v:.3g}" for k, v in worst.items()) + f", max relative |score diff| {score_worst:.3g}")
    assert not failures, "\n".join(failures)


def test_beam_outputs_and_guidance_default_model(hf_default, default_gguf, run_mlxgp_json, tmp_path):
    model, tok = hf_default
    f = OUTPUT_FLAGS
    chat = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                   add_generation_prompt=True, tokenize=True)
    chat = list(chat["input_ids"] if hasattr(chat, "keys") else chat)
    fox, story = tok("The quick brown fox").input_ids, tok("Once upon a time, there was").input_ids
    neg = tok("A very happy event happened,").input_ids
    cases = [
        ("default chat nb4 outputs", chat, {"num_beams": 4, "max_new_tokens": 10, "num_return_sequences": 2, **f}),
        ("default story nb5 stop strings outputs", story, {"num_beams": 5, "max_new_tokens": 10,
                                                           "stop_strings": [".", ","], "num_return_sequences": 2,
                                                           **f}),
        ("default fox guidance 1.5", fox, {"num_beams": 3, "max_new_tokens": 10, "guidance_scale": 1.5,
                                           "num_return_sequences": 2, **f}),
        ("default fox guidance 2 + negative prompt", fox, {"num_beams": 4, "max_new_tokens": 10,
                                                           "guidance_scale": 2.0, **f}, _negative_args(neg), neg),
    ]
    ours, refs = _run_cases(run_mlxgp_json, default_gguf, cases, tmp_path,
                            lambda ids, cfg, neg=None: _reference_outputs(model, ids, cfg, neg, tok))
    failures, worst, score_worst, n = _check_outputs(cases, refs, ours, SCORE_ATOL_DEFAULT)
    print(f"\nbeam per-step outputs + guidance (default model): {len(cases)} configs, {n} sequences, max |diff| "
          + ", ".join(f"{k} {v:.3g}" for k, v in worst.items()) + f", max relative |score diff| {score_worst:.3g}")
    assert not failures, "\n".join(failures)


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
                          (["--num-beams", "4", "--num-beam-groups", "2", "--diversity-penalty", "0.5",
                            "--guidance-scale", "2"], "[generate]")]:
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
