"""Generation outputs against transformers, run live on the default model in fp32:
- output_scores / output_logits (`--scores-out`) against generate(return_dict_in_generate=True,
  output_scores=True, output_logits=True): same -inf pattern, finite values within 1e-3;
- `--json` "scores" / "logits" / "logprobs" against compute_transition_scores(normalize_logits=False / True);
- num_return_sequences with sampling: N sequences, reproducible with a seed, each token a valid draw
  whose log-probability matches the reference's teacher-forced processed distribution;
- CLI errors for these options."""
import json
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

TOL = 1e-3
ONE_LINE = re.compile(r"^\[([a-z_]+)\] [^\n]+\n$")


def _chat(tok, text):
    ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def _cases(tok):
    """(name, prompt ids, HF GenerationConfig fields). Greedy, or sampling that top_k=1 makes
    deterministic, so both sides take the same path and their per-step arrays can be compared."""
    return [
        ("greedy, processors put -inf in (suppress, min_new_tokens)", _chat(tok, "Name a colour."),
         {"max_new_tokens": 8, "repetition_penalty": 1.3, "min_new_tokens": 4, "suppress_tokens": [30, 28]}),
        ("greedy, renormalized scores", tok("The quick brown fox").input_ids,
         {"max_new_tokens": 6, "bad_words_ids": [[253, 2365]], "renormalize_logits": True}),
        ("sampling warpers, top_k=1", tok("Once upon a time, there was").input_ids,
         {"max_new_tokens": 6, "do_sample": True, "temperature": 0.5, "top_k": 1}),
    ]


def _reference(model, ids, cfg):
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             return_dict_in_generate=True, output_scores=True, output_logits=True, **cfg)
        raw = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=False)[0]
        norm = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)[0]
    return {"tokens": out.sequences[0, len(ids):].tolist(), "scores": torch.stack(out.scores, 1)[0].numpy(),
            "logits": torch.stack(out.logits, 1)[0].numpy(), "chosen_scores": raw.numpy(), "logprobs": norm.numpy()}


def _max_diff(ours, ref, what):
    """Max |diff| over finite entries after checking the -inf pattern matches exactly."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs {ref.shape}"
    assert np.array_equal(np.isneginf(ours), np.isneginf(ref)), f"{what}: -inf patterns differ"
    assert np.array_equal(np.isfinite(ours), np.isfinite(ref)), f"{what}: finite patterns differ"
    fin = np.isfinite(ref)
    return float(np.max(np.abs(ours[fin] - ref[fin]))) if fin.any() else 0.0


def test_scores_logits_logprobs_match_transformers(hf_default, default_gguf, run_mlxgp, tmp_path):
    from safetensors.numpy import load_file

    model, tok = hf_default
    cases = _cases(tok)
    args = []
    for i, (_, ids, cfg) in enumerate(cases):
        (tmp_path / f"cfg{i}.json").write_text(json.dumps(cfg))
        args.append(["generate", "--model", default_gguf, "--dtype", "float32", "--input-ids", ",".join(map(str, ids)),
                     "--config", tmp_path / f"cfg{i}.json", "--output-scores", "--output-logits", "--output-logprobs",
                     "--scores-out", tmp_path / f"out{i}.safetensors", "--json", "--seed", 3])
    with ThreadPoolExecutor(max_workers=1) as pool:  # mlxgp runs while transformers generates
        procs = [pool.submit(run_mlxgp, *a) for a in args]
        refs = [_reference(model, ids, cfg) for _, ids, cfg in cases]
        outs = [json.loads(p.result().stdout)["sequences"][0] for p in procs]
    worst = {}
    for i, ((name, _, _), ref, got) in enumerate(zip(cases, refs, outs)):
        assert got["token_ids"] == ref["tokens"], name
        arrays = load_file(str(tmp_path / f"out{i}.safetensors"))
        assert sorted(arrays) == ["logits.0", "scores.0", "token_ids.0"]
        assert arrays["token_ids.0"].tolist() == ref["tokens"]
        n = len(ref["tokens"])
        for key, ours, theirs in [("scores", arrays["scores.0"], ref["scores"]), ("logits", arrays["logits.0"], ref["logits"]),
                                  ("json scores", got["scores"], ref["chosen_scores"]),
                                  ("json logits", got["logits"], ref["logits"][np.arange(n), ref["tokens"]]),
                                  ("json logprobs", got["logprobs"], ref["logprobs"])]:
            d = _max_diff(ours, theirs, f"{name}: {key}")
            worst[key] = max(worst.get(key, 0.0), d)
            assert d < TOL, f"{name}: {key} max |diff| {d:.3g}"
        if "renormalize" in name:  # the processed scores are log-probabilities: logprobs equal them
            assert np.allclose(got["scores"], got["logprobs"], atol=1e-4)
    print("\noutputs parity, max |diff| over finite values:", {k: f"{v:.2e}" for k, v in worst.items()})


def test_outputs_are_absent_unless_requested(default_gguf, run_mlxgp_json):
    seq = run_mlxgp_json("generate", "--model", default_gguf, "--prompt", "Hi", "--max-new-tokens", 3,
                         "--ignore-eos")["sequences"][0]
    assert list(seq) == ["token_ids", "text", "finish_reason"]
    seq = run_mlxgp_json("generate", "--model", default_gguf, "--prompt", "Hi", "--max-new-tokens", 3,
                         "--ignore-eos", "--output-logprobs")["sequences"][0]
    assert list(seq) == ["token_ids", "text", "finish_reason", "logprobs"]
    assert len(seq["logprobs"]) == 3 and all(lp <= 0 for lp in seq["logprobs"])


def test_num_return_sequences_sampling(hf_default, default_gguf, run_mlxgp_json):
    """Three sampled sequences from one prompt: reproducible with a seed, different from each other, and
    each token a valid draw: inside the reference's top-k, with the log-probability the reference's
    teacher-forced distribution (logits / T, top-k, log_softmax) gives it."""
    import torch

    model, tok = hf_default
    ids = tok("The best way to learn a language is").input_ids
    temperature, top_k = 0.8, 20
    args = ["generate", "--model", default_gguf, "--dtype", "float32", "--input-ids", ",".join(map(str, ids)),
            "--do-sample", "--temperature", temperature, "--top-k", top_k, "--num-return-sequences", 3,
            "--max-new-tokens", 12, "--output-logprobs"]
    a = run_mlxgp_json(*args, "--seed", 7)
    b = run_mlxgp_json(*args, "--seed", 7)
    c = run_mlxgp_json(*args, "--seed", 8)
    seqs = a["sequences"]
    assert len(seqs) == 3 and a["prompt_token_ids"] == ids
    assert [s["token_ids"] for s in seqs] == [s["token_ids"] for s in b["sequences"]]
    assert [s["text"] for s in seqs] == [s["text"] for s in b["sequences"]]
    assert [s["token_ids"] for s in seqs] != [s["token_ids"] for s in c["sequences"]]
    assert len({tuple(s["token_ids"]) for s in seqs}) > 1, "three samples were identical"
    assert a["stats"]["generated_tokens"] == sum(len(s["token_ids"]) for s in seqs)
    eos = model.generation_config.eos_token_id
    worst = 0.0
    for s in seqs:
        gen = s["token_ids"]
        assert 1 <= len(gen) <= 12
        assert s["finish_reason"] == ("eos" if gen[-1] == eos else "length")
        assert s["finish_reason"] == "eos" or len(gen) == 12
        assert s["text"] == tok.decode(gen[:-1] if s["finish_reason"] == "eos" else gen)
        with torch.no_grad():
            logits = model(torch.tensor([ids + gen])).logits[0, len(ids) - 1:len(ids) - 1 + len(gen)].double()
        scores = logits / temperature
        kth = scores.topk(top_k, dim=-1).values[:, -1:]
        chosen = scores[torch.arange(len(gen)), gen]
        assert bool((chosen >= kth[:, 0] - 1e-4).all()), "a sampled token lies outside the reference's top-k"
        ref_lp = torch.log_softmax(scores.masked_fill(scores < kth, float("-inf")), -1)[torch.arange(len(gen)), gen]
        worst = max(worst, float((torch.tensor(s["logprobs"], dtype=torch.float64) - ref_lp).abs().max()))
    print(f"\nnum_return_sequences=3: logprobs max |diff| vs teacher-forced reference {worst:.2e}")
    assert worst < TOL


def test_negative_prompt_reaches_guidance(hf_default, default_gguf, run_mlxgp_json):
    """--negative-input-ids / --negative-prompt feed classifier-free guidance's unconditional branch:
    greedy tokens equal transformers generate(guidance_scale=..., negative_prompt_ids=...)."""
    import torch

    model, tok = hf_default
    ids = tok("My favourite food is").input_ids
    negative = tok("I hate everything.").input_ids
    common = ["generate", "--model", default_gguf, "--dtype", "float32", "--input-ids", ",".join(map(str, ids)),
              "--guidance-scale", 1.5, "--max-new-tokens", 8, "--ignore-eos"]
    by_ids = run_mlxgp_json(*common, "--negative-input-ids", ",".join(map(str, negative)))["sequences"][0]
    by_text = run_mlxgp_json(*common, "--negative-prompt", "I hate everything.")["sequences"][0]
    plain = run_mlxgp_json(*common)["sequences"][0]  # default unconditional prompt: the last prompt token
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=8, eos_token_id=None, guidance_scale=1.5,
                             negative_prompt_ids=torch.tensor([negative]))
    ref = out[0, len(ids):].tolist()
    assert by_ids["token_ids"] == ref
    assert by_text["token_ids"] == ref  # the text encodes to the same ids
    assert plain["token_ids"] != ref, "the negative prompt changed nothing: pick another"


@pytest.mark.parametrize("args, component, fragment", [
    (["--num-return-sequences", 2], "config", "'num_return_sequences' > 1 needs do_sample=true"),
    (["--num-return-sequences", 0], "config", "field 'num_return_sequences' must be >= 1"),
    (["--negative-prompt", "x"], "cli", "need --guidance-scale"),
    (["--guidance-scale", 1.5, "--negative-prompt", "x", "--negative-input-ids", "1"], "cli", "at most one of"),
    (["--guidance-scale", 1.5, "--negative-input-ids", "1,99999"], "generate", "negative prompt token id 99999"),
    (["--stop-strings", "[\"a\", \"\"]"], "config", "'stop_strings' must not contain an empty string"),
    (["--scores-out", ""], "cli", "--scores-out needs a file name"),
    (["--scores-out", "/nonexistent-dir/x.safetensors"], "cli", "directory '/nonexistent-dir' does not exist"),
])
def test_cli_errors(run_mlxgp, default_gguf, args, component, fragment):
    proc = run_mlxgp("generate", "--model", default_gguf, "--prompt", "Hi", "--max-new-tokens", 2, *args, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    m = ONE_LINE.match(proc.stderr)
    assert m and m.group(1) == component and fragment in proc.stderr, proc.stderr
