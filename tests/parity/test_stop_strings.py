"""stop_strings parity: greedy `mlxgp generate --dtype float32 --stop-strings ...` against transformers
`generate(stop_strings=..., tokenizer=...)` run live on the default model: identical token ids and finish
reasons, including strings that span tokens, strings begun in the prompt, several strings, and strings
that only occur in the prompt (which must not stop anything)."""
import json
from concurrent.futures import ThreadPoolExecutor

MAX_NEW = 24


def _cases(tok):
    """(name, prompt ids, stop strings). The strings were picked against the reference's greedy output
    for these prompts, but the expected result is always recomputed live."""
    fox = tok("The quick brown fox").input_ids        # -> " with a quick brown bear.\n\nThe original ..."
    fib = tok("def fibonacci(n):\n    ").input_ids   # -> " def fibonacci(n):\n         if n == 0: ..."
    seq = tok("1, 2, 3, 5, 8, 13,").input_ids        # -> " 16, 20, 29, ..." (one digit per token)
    town = tok("Once upon a time, there was").input_ids  # -> " a small town nestled in the heart of ..."
    chat = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                   add_generation_prompt=True, tokenize=True)
    chat = list(chat["input_ids"] if hasattr(chat, "keys") else chat)
    return [
        ("inside one token", fox, ["bear"], MAX_NEW),
        ("spans '):' + newline token, overhangs the end", fib, ["):\n  "], MAX_NEW),
        ("spans ' hom' + 'ophone', overhangs both ends", fox, ["mophon"], MAX_NEW),
        ("begun in the prompt", seq, ["13, 1"], MAX_NEW),
        ("several strings, first hit wins", town, ["jewelry", "town", "never-there"], MAX_NEW),
        ("only in the prompt: no stop", fox, ["fox"], 12),
        ("never generated: length", town, ["zebra"], 8),
        ("newline string", fox, ["\n\n"], MAX_NEW),
        ("EOS first in a chat reply", chat, ["Zanzibar"], 32),
    ]


def _reference(model, tok, ids, stops, max_new, eos):
    import torch
    from transformers import StopStringCriteria

    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=max_new, stop_strings=stops,
                             tokenizer=tok, attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    gen = out[0, len(ids):].tolist()
    if gen and gen[-1] in eos:
        reason = "eos"
    elif bool(StopStringCriteria(tok, stops)(out, None)[0]):
        reason = "stop_string"
    else:
        reason = "length"
    return gen, reason


def test_stop_strings_match_transformers(hf_default, default_gguf, run_mlxgp_json, tmp_path):
    model, tok = hf_default
    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    cases = _cases(tok)
    for i, (_, _, stops, max_new) in enumerate(cases):  # a JSON config carries any string exactly
        (tmp_path / f"stop{i}.json").write_text(json.dumps({"stop_strings": stops, "max_new_tokens": max_new}))
    with ThreadPoolExecutor(max_workers=1) as pool:  # mlxgp runs while transformers generates
        ours = [pool.submit(run_mlxgp_json, "generate", "--model", default_gguf, "--dtype", "float32", "--input-ids",
                            ",".join(map(str, ids)), "--config", tmp_path / f"stop{i}.json")
                for i, (_, ids, _, _) in enumerate(cases)]
        refs = [_reference(model, tok, ids, stops, max_new, eos) for _, ids, stops, max_new in cases]
        ours = [f.result()["sequences"][0] for f in ours]
    failures = []
    for (name, _, stops, _), (ref, reason), got in zip(cases, refs, ours):
        if got["token_ids"] != ref or got["finish_reason"] != reason:
            failures.append(f"{name} {stops}: ours {got['token_ids']} ({got['finish_reason']}) vs ref {ref} ({reason})")
    reasons = [r for _, r in refs]
    print(f"\nstop_strings parity: {len(cases) - len(failures)}/{len(cases)} cases identical; reference reasons {reasons}")
    assert not failures, "\n".join(failures)
    # The cases must exercise what they claim (guards against a model or tokenizer change).
    assert reasons.count("stop_string") >= 5 and "length" in reasons and "eos" in reasons


def test_stop_string_flag_and_text(default_gguf, run_mlxgp_json, run_mlxgp):
    """--stop-strings takes one string or a JSON list; the text keeps the stop string (HF returns the
    token that completed it)."""
    args = ["generate", "--model", default_gguf, "--dtype", "float32", "--prompt", "The quick brown fox",
            "--max-new-tokens", 16]
    one = run_mlxgp_json(*args, "--stop-strings", "bear")["sequences"][0]
    assert one["finish_reason"] == "stop_string" and one["text"].endswith("bear")
    listed = run_mlxgp_json(*args, "--stop-strings", '["zzz", "quick"]')["sequences"][0]
    assert listed["finish_reason"] == "stop_string" and listed["text"].endswith("quick")
    assert len(listed["token_ids"]) < len(one["token_ids"])
    bad = run_mlxgp(*args, "--stop-strings", "[1, 2]", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("[config] field 'stop_strings' expects")
