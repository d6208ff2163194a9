"""Batched generation: `mlxgp generate --prompts-file requests.jsonl --json` (and the Python package's
`generate(model, tokenizer, [prompts], cfg)`) against transformers' batched `generate()` run live here.

1. Parity: transformers decodes the same prompts as one left-padded batch (pad id 0, an attention mask,
   so position ids come from the mask), prompts of 1 to 100+ tokens, greedy and beam search (num_beams 3)
   with processors that bite (repetition_penalty, no_repeat_ngram_size, min_new_tokens, bad_words_ids),
   on the tiny random llama / mistral / qwen2 / qwen3 and on the default model (the GGUF dequantized to
   fp32 by both sides). Greedy sequences must be identical up to the first EOS (transformers pads after
   it), except at a reference near-tie (top-2 logit gap < 1e-4, test_generate_parity's rule); beam
   sequences identical with `sequences_scores` within 1e-4 relative (tiny) / 1e-3 (default model), as in
   test_beam_search. Configs with repetition_penalty / no_repeat_ngram_size also suppress the pad id in
   both: transformers' processors read the padded input_ids, so pads would count as context there.
2. Padding invariance: every row of an mlxgp batch equals the same request run alone with --input-ids
   (greedy, processors, and sampling with a per-row seed), at two batch sizes.
3. Different configs per row in one batch (temperatures + seeds, repetition penalty, stop strings,
   max_new_tokens, num_return_sequences with sampling, a beam search among them): every row equals its
   solo run with the command line's settings and the line's config merged.
4. Python: a list of prompts (one config, or a list of configs) gives the CLI batch's tokens and texts.
5. Errors: a bad line exits 2 with one stderr line `[generate] <file>:<line>: ...` and no output."""
import copy
import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402
from test_beam_search import SCORE_ATOL, SCORE_ATOL_DEFAULT  # noqa: E402
from test_generate_parity import NEAR_TIE, reference_top2_gap  # noqa: E402

PAD = 0  # the reference's pad id: tiny models have none; the default model's own pad is its EOS (2)
_rng = np.random.default_rng(7)
# 1, 6, 41 and 130 tokens: three of the four rows are left-padded, one by 129 positions.
TINY_PROMPTS = [[1]] + [[1] + _rng.integers(3, 512, n - 1).tolist() for n in (6, 41, 130)]
LONG_TEXT = ("In 1905, Albert Einstein published four papers that changed physics. The first explained the "
             "photoelectric effect, the second Brownian motion, the third special relativity, and the fourth the "
             "equivalence of mass and energy. These papers, written while he worked at the patent office in Bern, "
             "made him famous among physicists within a few years. Later he moved to Zurich, then Prague, and "
             "finally Berlin, where he completed the general theory of relativity in 1915. Four years later, a "
             "solar eclipse confirmed")


# ---------------------------------------------------------------------------------------------- helpers

def _write_jsonl(path, requests):
    path.write_text("".join(json.dumps(r) + "\n" for r in requests))
    return path


def _mlxgp_batch(run_mlxgp, model, path, requests, *args):
    """Runs one --prompts-file with `requests`; returns the JSON objects, one per request, in order."""
    _write_jsonl(path, requests)
    proc = run_mlxgp("generate", "--model", model, "--prompts-file", path, *args, "--json")
    outs = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(outs) == len(requests), proc.stdout
    return outs


def _mlxgp_solo(run_mlxgp, model, tmp_path, request, config, *args):
    """The same request alone: --input-ids / --prompt, with `config` (a dict) as a --config file."""
    cfg = tmp_path / "solo_config.json"
    cfg.write_text(json.dumps(config))
    prompt = (["--input-ids", ",".join(map(str, request["input_ids"]))] if "input_ids" in request
              else ["--prompt", request["prompt"]])
    return json.loads(run_mlxgp("generate", "--model", model, *prompt, "--config", cfg, *args, "--json").stdout)


def _essence(out):
    """A result without its timings (prefill/decode speeds and memory differ run to run)."""
    st = out["stats"]
    return {"prompt_token_ids": out["prompt_token_ids"], "sequences": out["sequences"],
            "stats": {"prompt_tokens": st["prompt_tokens"], "generated_tokens": st["generated_tokens"]}}


def _left_pad(prompts, pad_id=PAD):
    import torch

    width = max(map(len, prompts))
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def _eos_ids(model, cfg):
    eos = cfg.get("eos_token_id", model.generation_config.eos_token_id)
    return set([eos] if isinstance(eos, int) else (eos or []))


def hf_batch(model, input_ids, attention_mask, cfg, pad_id=PAD, tokenizer=None):
    """transformers' batched generate() on left-padded rows. Per row, the returned sequences as
    (tokens, sequences_score, beam_indices) (the last two None for greedy); greedy tokens are cut after
    the first EOS (transformers fills the rest of a finished row with pad_token_id), beam tokens to the
    hypothesis' length, beam indices made relative to the row's own beams."""
    import torch

    beams = cfg.get("num_beams", 1)
    nrs = cfg.get("num_return_sequences", 1)
    eos = _eos_ids(model, cfg)
    extra = {"tokenizer": tokenizer} if tokenizer is not None else {}
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=attention_mask, do_sample=False, pad_token_id=pad_id,
                             return_dict_in_generate=True, output_scores=beams > 1, **cfg, **extra)
    width = input_ids.shape[1]
    rows = []
    for r in range(input_ids.shape[0]):
        seqs = []
        for k in range(nrs):
            i = r * nrs + k
            toks = out.sequences[i, width:].tolist()
            if beams > 1:
                bi = [b - r * beams for b in out.beam_indices[i].tolist() if b >= 0]  # -1 pads shorter ones
                seqs.append((toks[:len(bi)], float(out.sequences_scores[i]), bi))
            else:
                end = next((j + 1 for j, t in enumerate(toks) if t in eos), len(toks))
                seqs.append((toks[:end], None, None))
        rows.append(seqs)
    return rows


def ours_top2_gap(run_mlxgp, model_path, ids, out_path, *args):
    """mlxgp's own top-2 logit gap for the token after `ids` (prefill + cached decode, run alone)."""
    from safetensors.numpy import load_file

    run_mlxgp("logits", "--model", model_path, "--input-ids", ",".join(map(str, ids)), "--out", out_path, *args)
    logits = load_file(str(out_path))["logits"]
    top = np.sort(logits.reshape(-1, logits.shape[-1])[-1].astype(np.float64))[-2:]
    return float(top[1] - top[0])


class Tally:
    """Parity figures over a test: sequences and tokens identical, near ties, worst score difference."""

    def __init__(self):
        self.seqs = self.same_seqs = self.tokens = self.same_tokens = 0
        self.worst = 0.0
        self.near_ties, self.failures = [], []

    def compare(self, name, ref_model, prompts, refs, ours, atol, ours_gap):
        """refs: hf_batch rows; ours: mlxgp JSON objects, same order. `ours_gap(ids)` is only called at a
        divergence, to report both margins."""
        for row, (prompt, ref, got) in enumerate(zip(prompts, refs, ours)):
            where = f"{name} row {row} (prompt of {len(prompt)} tokens)"
            if got["prompt_token_ids"] != list(prompt):
                self.failures.append(f"{where}: prompt ids {got['prompt_token_ids'][:8]}... differ")
                continue
            seqs = got["sequences"]
            if len(seqs) != len(ref):
                self.failures.append(f"{where}: {len(seqs)} sequences vs the reference's {len(ref)}")
                continue
            for k, ((toks, score, bi), s) in enumerate(zip(ref, seqs)):
                self.seqs += 1
                self.tokens += len(toks)
                mine = s["token_ids"]
                if score is not None:  # beam search: the exact hypotheses, scores close
                    if mine != toks or s["beam_indices"] != bi:
                        self.failures.append(f"{where} #{k}: ours {mine} {s['beam_indices']} vs ref {toks} {bi}")
                        continue
                    d = abs(s["score"] - score) / max(1.0, abs(score))
                    self.worst = max(self.worst, d)
                    if d > atol:
                        self.failures.append(f"{where} #{k}: score {s['score']} vs {score} (rel {d:.3g})")
                        continue
                    self.same_seqs += 1
                    self.same_tokens += len(toks)
                    continue
                if mine == toks:
                    self.same_seqs += 1
                    self.same_tokens += len(toks)
                    continue
                i = next((j for j in range(min(len(mine), len(toks))) if mine[j] != toks[j]), min(len(mine), len(toks)))
                self.same_tokens += i
                if i >= len(toks) or i >= len(mine):
                    self.failures.append(f"{where} #{k}: one output is a prefix of the other (ours {len(mine)} "
                                         f"tokens, ref {len(toks)}): ours {mine} vs ref {toks}")
                    continue
                ctx = list(prompt) + toks[:i]
                gap = reference_top2_gap(ref_model, ctx)
                case = (f"{where} #{k}: first difference at generated position {i} (ref {toks[i]}, ours {mine[i]}); "
                        f"raw top-2 logit gap: reference {gap:.3g}")
                if gap < NEAR_TIE:
                    self.near_ties.append(case)
                else:
                    self.failures.append(f"{case}, mlxgp {ours_gap(ctx):.3g}\n  ours {mine}\n  ref  {toks}")

    def report(self, title):
        print(f"\n{title}: {self.same_seqs}/{self.seqs} sequences identical, {self.same_tokens}/{self.tokens} "
              f"tokens identical (tokens after a divergence not counted), max relative |beam score diff| "
              f"{self.worst:.3g}")
        for c in self.near_ties:
            print("near tie (allowed):", c)
        assert not self.failures, "\n".join(self.failures)


def _single_threaded_torch():
    """mlxgp runs alongside transformers on a 2-core machine: torch keeps to one thread meanwhile."""
    import torch

    class _Ctx:
        def __enter__(self):
            self.n = torch.get_num_threads()
            torch.set_num_threads(1)

        def __exit__(self, *exc):
            torch.set_num_threads(self.n)

    return _Ctx()


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return {arch: tiny_models.make_tiny_model(arch, tmp_path_factory.mktemp(f"batch_{arch}"))
            for arch in tiny_models.ARCHS}


@pytest.fixture(scope="module")
def default_texts(hf_default):
    _, tok = hf_default
    chat = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                   add_generation_prompt=True, tokenize=False)
    return ["Hi", "The quick brown fox", chat, LONG_TEXT]


# ---------------------------------------------------------------------------------------------- 1. parity

def _biting_processors(plain_rows):
    """Processor settings that change the tiny models' greedy output: their three most frequent greedy
    tokens become extra EOS ids (so rows end at different steps and min_new_tokens holds them back), the
    next most frequent token and the most frequent bigram of two other tokens are bad words."""
    outs = [seqs[0][0] for seqs in plain_rows]
    common = [t for t, _ in Counter(t for o in outs for t in o if t != PAD).most_common(4)]
    bigrams = Counter((a, b) for o in outs for a, b in zip(o, o[1:]) if a != b and {a, b}.isdisjoint(common))
    bad = [[common[3]]] + ([list(bigrams.most_common(1)[0][0])] if bigrams else [])
    return {"repetition_penalty": 1.3, "no_repeat_ngram_size": 3, "min_new_tokens": 4, "bad_words_ids": bad,
            "eos_token_id": [2] + common[:3], "suppress_tokens": [PAD]}


@pytest.mark.parametrize("arch", tiny_models.ARCHS)
def test_tiny_batch_matches_transformers(tiny, arch, run_mlxgp, tmp_path):
    model, folder = tiny[arch]
    ids, mask = _left_pad(TINY_PROMPTS)
    plain = {"max_new_tokens": 14}
    ref_plain = hf_batch(model, ids, mask, plain)
    procs = _biting_processors(ref_plain)
    configs = {
        "greedy": plain,
        "greedy + processors": {"max_new_tokens": 14, **procs},
        "beam3": {"num_beams": 3, "max_new_tokens": 10},
        "beam3 + processors nrs2": {"num_beams": 3, "max_new_tokens": 10, "num_return_sequences": 2, **procs},
    }
    requests = [{"input_ids": p, "config": cfg} for cfg in configs.values() for p in TINY_PROMPTS]
    with _single_threaded_torch(), ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(_mlxgp_batch, run_mlxgp, folder, tmp_path / "requests.jsonl", requests, "--dtype", "float32")
        refs = {name: ref_plain if name == "greedy" else hf_batch(model, ids, mask, cfg) for name, cfg in configs.items()}
        ours = fut.result()
    tally = Tally()
    n = len(TINY_PROMPTS)
    for c, (name, cfg) in enumerate(configs.items()):
        tally.compare(f"{arch} {name}", model, TINY_PROMPTS, refs[name], ours[c * n:(c + 1) * n], SCORE_ATOL,
                      lambda ctx: ours_top2_gap(run_mlxgp, folder, ctx, tmp_path / "l.safetensors", "--dtype", "float32"))
    tally.report(f"batched parity, tiny {arch} ({len(requests)} requests in one --prompts-file)")
    # The processors bite: most rows change, and the extra EOS ends some rows early.
    changed = sum(a["sequences"][0]["token_ids"] != b["sequences"][0]["token_ids"] for a, b in zip(ours[:n], ours[n:2 * n]))
    assert changed >= n - 1, changed
    assert any(s["finish_reason"] == "eos" for o in ours[n:] for s in o["sequences"])


def test_default_model_batch_matches_transformers(hf_default, default_gguf, default_texts, run_mlxgp, tmp_path):
    model, tok = hf_default
    reftok = copy.deepcopy(tok)  # its own pad (<|endoftext|>, id 0): the model's pad is its EOS
    reftok.pad_token, reftok.padding_side = reftok.convert_ids_to_tokens(PAD), "left"
    enc = reftok(default_texts, return_tensors="pt", padding=True)
    prompts = [tok(t).input_ids for t in default_texts]
    assert [len(p) for p in prompts][0] == 1 and len(prompts[-1]) > 100, [len(p) for p in prompts]
    paris, a_quick = tok(" Paris").input_ids, tok(" a quick").input_ids
    procs = {"repetition_penalty": 1.3, "no_repeat_ngram_size": 3, "min_new_tokens": 10,
             "bad_words_ids": [paris, a_quick], "suppress_tokens": [PAD]}
    configs = {
        "greedy": {"max_new_tokens": 14},
        "greedy + processors": {"max_new_tokens": 14, **procs},
        "beam3 nrs2": {"num_beams": 3, "max_new_tokens": 10, "num_return_sequences": 2},
    }
    requests = [{"prompt": t, "config": cfg} for cfg in configs.values() for t in default_texts]
    with _single_threaded_torch(), ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(_mlxgp_batch, run_mlxgp, default_gguf, tmp_path / "requests.jsonl", requests,
                          "--dtype", "float32")
        refs = {name: hf_batch(model, enc.input_ids, enc.attention_mask, cfg, tokenizer=tok)
                for name, cfg in configs.items()}
        ours = fut.result()
    tally = Tally()
    n = len(default_texts)
    for c, (name, cfg) in enumerate(configs.items()):
        tally.compare(f"default {name}", model, prompts, refs[name], ours[c * n:(c + 1) * n], SCORE_ATOL_DEFAULT,
                      lambda ctx: ours_top2_gap(run_mlxgp, default_gguf, ctx, tmp_path / "l.safetensors",
                                                "--dtype", "float32"))
    tally.report(f"batched parity, default model fp32 ({len(requests)} requests in one --prompts-file)")
    for o in ours:  # the text is the reference tokenizer's decode of the ids (EOS excluded)
        for s in o["sequences"]:
            ids = s["token_ids"][:-1] if s["finish_reason"] == "eos" else s["token_ids"]
            assert s["text"] == tok.decode(ids)
    reasons = [o["sequences"][0]["finish_reason"] for o in ours]
    assert reasons[2] == "eos" and reasons[n + 2] == "length", reasons  # min_new_tokens holds the chat answer's EOS
    assert paris[0] in ours[2]["sequences"][0]["token_ids"]  # " Paris" without bad_words_ids...
    assert paris[0] not in ours[n + 2]["sequences"][0]["token_ids"]  # ...and not with it


# ---------------------------------------------------------------------------------------------- 2. padding invariance

@pytest.mark.parametrize("arch", tiny_models.ARCHS)
def test_rows_equal_solo_runs(tiny, arch, run_mlxgp, tmp_path):
    """Each row of a left-padded batch gives what the prompt gives alone, at two batch sizes (all rows
    at once; 5 at a time, so rows join as others finish). Sampled rows carry their own seed. Rotating
    caches too: the 1-token prompt's next tokens land in its kept positions (a batch once left them
    empty)."""
    _, folder = tiny[arch]
    configs = [{"max_new_tokens": 12},
               {"max_new_tokens": 12, "repetition_penalty": 1.4, "no_repeat_ngram_size": 2, "min_new_tokens": 3},
               {"max_new_tokens": 12, "max_kv_size": 8}]
    requests = [{"input_ids": p, "config": c} for c in configs for p in TINY_PROMPTS]
    requests += [{"input_ids": p, "config": {"max_new_tokens": 10 + i, "do_sample": True, "temperature": 1.2,
                                             "top_k": 0, "seed": 100 + i}} for i, p in enumerate(TINY_PROMPTS)]
    big = _mlxgp_batch(run_mlxgp, folder, tmp_path / "r.jsonl", requests, "--dtype", "float32")
    small = _mlxgp_batch(run_mlxgp, folder, tmp_path / "r.jsonl", requests, "--dtype", "float32", "--batch-size", 5)
    failures = []
    for i, (req, a, b) in enumerate(zip(requests, big, small)):
        solo = _essence(_mlxgp_solo(run_mlxgp, folder, tmp_path, req, req["config"], "--dtype", "float32"))
        for label, got in (("batch 16", a), ("batch 5", b)):
            if _essence(got) != solo:
                failures.append(f"{arch} request {i} ({req['config']}, prompt of {len(req['input_ids'])}) {label}: "
                                f"{got['sequences']} vs solo {solo['sequences']}")
    print(f"\npadding invariance, tiny {arch}: {2 * len(requests) - len(failures)}/{2 * len(requests)} rows equal "
          "their solo runs")
    assert not failures, "\n".join(failures)
    n = len(TINY_PROMPTS)
    sampled = [o["sequences"][0]["token_ids"] for o in big[3 * n:]]
    greedy = [o["sequences"][0]["token_ids"] for o in big[:n]]
    assert sum(s[:10] != g[:10] for s, g in zip(sampled, greedy)) >= n - 1  # the rows really sample


# ---------------------------------------------------------------------------------------------- 3. per-row configs

def test_mixed_configs_in_one_batch(default_gguf, run_mlxgp, tmp_path):
    """One batch, a different config on every line (on the command line's settings); the default model as
    shipped (Q4_1). Every row equals its solo run with the merged settings."""
    base = {"max_new_tokens": 12, "repetition_penalty": 1.05}  # the command line's settings
    story, fox, q = "Once upon a time", "The quick brown fox", "The sky is blue because"
    requests = [
        {"prompt": story, "config": {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "seed": 11}},
        {"prompt": story, "config": {"do_sample": True, "temperature": 1.3, "top_k": 20, "seed": 12}},
        {"prompt": fox, "config": {"repetition_penalty": 1.5}},
        {"prompt": q, "config": {"stop_strings": [".", ","], "max_new_tokens": 20}},
        {"prompt": "Hi"},  # the command line's settings only
        {"prompt": fox, "config": {"max_new_tokens": 3}},
        {"prompt": story, "config": {"do_sample": True, "num_return_sequences": 3, "temperature": 0.9, "seed": 5,
                                     "max_new_tokens": 8}},
        {"prompt": q, "config": {"num_beams": 3, "max_new_tokens": 8}},  # the engine's beam batch
    ]
    ours = _mlxgp_batch(run_mlxgp, default_gguf, tmp_path / "mixed.jsonl", requests,
                        "--max-new-tokens", base["max_new_tokens"], "--repetition-penalty", base["repetition_penalty"])
    failures = []
    for i, (req, got) in enumerate(zip(requests, ours)):
        solo = _mlxgp_solo(run_mlxgp, default_gguf, tmp_path, req, {**base, **req.get("config", {})})
        if _essence(got) != _essence(solo):
            failures.append(f"request {i} {req}:\n  batch {got['sequences']}\n  solo  {solo['sequences']}")
    print(f"\nmixed configs, default model Q4_1: {len(requests) - len(failures)}/{len(requests)} rows equal their "
          "solo runs")
    assert not failures, "\n".join(failures)
    first = [o["sequences"][0] for o in ours]
    assert first[0]["token_ids"] != first[1]["token_ids"]  # same prompt, different sampling settings
    assert first[3]["finish_reason"] == "stop_string"
    assert len(first[5]["token_ids"]) == 3 and first[5]["finish_reason"] == "length"
    assert len(first[4]["token_ids"]) == base["max_new_tokens"] or first[4]["finish_reason"] == "eos"
    nrs = ours[6]["sequences"]
    assert len(nrs) == 3 and len({tuple(s["token_ids"]) for s in nrs}) >= 2
    assert len(ours[7]["sequences"]) == 1 and "score" in ours[7]["sequences"][0]


# ---------------------------------------------------------------------------------------------- 4. Python

def test_python_batch_equals_cli(default_gguf, run_mlxgp, tmp_path):
    import mlx_gen_parity as mgp  # make test-parity installs the package first
    model, tok = mgp.load(str(default_gguf))
    texts = ["The quick brown fox", "Hi", "The sky is blue because"]
    cfg = {"max_new_tokens": 10, "repetition_penalty": 1.2}
    cli = _mlxgp_batch(run_mlxgp, default_gguf, tmp_path / "py.jsonl", [{"prompt": t} for t in texts],
                       "--max-new-tokens", 10, "--repetition-penalty", 1.2)
    got = mgp.generate(model, tok, texts, cfg)
    assert isinstance(got, list) and len(got) == len(texts)
    for g, c in zip(got, cli):
        assert g["prompt_token_ids"] == c["prompt_token_ids"]
        assert [(s["token_ids"], s["text"], s["finish_reason"]) for s in g["sequences"]] == \
               [(s["token_ids"], s["text"], s["finish_reason"]) for s in c["sequences"]]
        assert g["tokens"] == c["sequences"][0]["token_ids"] and g["text"] == c["sequences"][0]["text"]

    # One config per prompt, two rows at a time.
    configs = [{"max_new_tokens": 8},
               {"max_new_tokens": 12, "do_sample": True, "temperature": 0.8, "seed": 3},
               {"max_new_tokens": 20, "stop_strings": ["."]}]
    cli = _mlxgp_batch(run_mlxgp, default_gguf, tmp_path / "py2.jsonl",
                       [{"prompt": t, "config": c} for t, c in zip(texts, configs)])
    got = mgp.generate(model, tok, texts, configs, batch_size=2)
    for g, c in zip(got, cli):
        assert g["prompt_token_ids"] == c["prompt_token_ids"]
        assert [(s["token_ids"], s["text"], s["finish_reason"]) for s in g["sequences"]] == \
               [(s["token_ids"], s["text"], s["finish_reason"]) for s in c["sequences"]]
    assert len(got[0]["tokens"]) <= 8 and len(got[1]["tokens"]) <= 12
    assert got[2]["finish_reason"] == "stop_string"
    with pytest.raises(ValueError):
        mgp.generate(model, tok, texts, configs[:2])  # two configs for three prompts


# ---------------------------------------------------------------------------------------------- 5. errors

@pytest.mark.parametrize("line,needle", [
    ('{"prompt": "x"', "malformed JSON"),
    ('[1, 2]', "not a JSON object"),
    ('{"input_ids": [1, 2], "temperature": 0.5}', "unknown key 'temperature'"),
    ('{"input_ids": [1, 2], "config": {"temperature": "hot"}}', "temperature"),
    ('{"input_ids": [1, 2], "config": {"num_beams": 0}}', "num_beams"),
    ('{"input_ids": [1, 2], "config": {"max_new_tokens": -3}}', "max_new_tokens"),
    ('{"input_ids": [1, 512]}', "512"),
    ('{"input_ids": [1, -1]}', "-1"),
    ('{"input_ids": []}', "empty"),
    ('{"prompt": "hello"}', "tokenizer"),  # the tiny model has no tokenizer
    # Checks of the batch itself, after every line parsed, name the line too.
    ('{"input_ids": [1, 2], "config": {"bad_words_ids": [[600]]}}', "bad_words_ids token id 600 is outside"),
    ('{"input_ids": [1, 2], "config": {"max_kv_size": 2}}', "kv keep must be in [0, max_kv_size)"),
])
def test_prompts_file_errors(tiny, run_mlxgp, tmp_path, line, needle):
    _, folder = tiny["llama"]
    # A valid line, a blank line (skipped, still counted), then the bad line: line 3.
    path = tmp_path / "requests.jsonl"
    path.write_text('{"input_ids": [1, 5, 9]}\n\n' + line + '\n{"input_ids": [1, 7]}\n')
    proc = run_mlxgp("generate", "--model", folder, "--prompts-file", path, "--max-new-tokens", 4, "--json",
                     check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[generate] requests.jsonl:3: "), proc.stderr
    assert needle in lines[0], lines[0]
    assert proc.stdout == ""  # every line is checked before anything runs
