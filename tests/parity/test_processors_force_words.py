"""force_words_ids outside beam search (greedy and sampling). transformers only honours force_words_ids
in constrained beam search, so there is no reference to compare with: these are property tests of the
semantics the issue defines, on the default model through `mlxgp generate`:
  - every constraint appears (a disjunctive one through any of its alternatives);
  - once a forced word's first token is produced, its continuation follows;
  - EOS never comes before every constraint has appeared;
  - strict start: when the budget only just fits the missing words they are started, so a word the
    model would never write still appears, at the very end.
The words below share no tokens, so the checker can walk the output greedily."""
import json

import numpy as np

import pytest

CHAT = "What is the capital of France?"
WORDS = {w: None for w in (" zebra", " quantum", " banana", " purple", " Berlin", " ocean")}


@pytest.fixture(scope="module")
def setup(hf_default):
    tok = hf_default[1]  # the session's tokenizer (shared with the other parity tests)
    words = {w: tok(w, add_special_tokens=False).input_ids for w in WORDS}
    # Two-token words as well: "the zebra" / "a quantum" (first tokens the model writes often).
    words[" the zebra"] = tok(" the zebra", add_special_tokens=False).input_ids
    words[" a zebra"] = tok(" a zebra", add_special_tokens=False).input_ids
    words[" blue ocean"] = tok(" blue ocean", add_special_tokens=False).input_ids
    chat = tok.apply_chat_template([{"role": "user", "content": CHAT}], add_generation_prompt=True, tokenize=True)
    chat = list(chat["input_ids"] if hasattr(chat, "keys") else chat)
    return tok, words, chat, tok("The quick brown fox").input_ids


def _generate(run_mlxgp_json, gguf, tmp_path, ids, cfg, *extra):
    path = tmp_path / f"gen{abs(hash(json.dumps(cfg, sort_keys=True)))}.json"
    path.write_text(json.dumps(cfg))
    out = run_mlxgp_json("generate", "--model", gguf, "--input-ids", ",".join(map(str, ids)), "--config", path, *extra)
    return out["sequences"]


def _check(gen, constraints, eos, finish):
    """Walks the generated ids: returns a list of property violations (empty when all hold)."""
    problems, met, i = [], [False] * len(constraints), 0
    while i < len(gen):
        t = gen[i]
        started = [(c, alt) for c, alts in enumerate(constraints) if not met[c] for alt in alts if alt[0] == t]
        if started:
            c, alt = max(started, key=lambda x: len(x[1]))
            got = gen[i:i + len(alt)]
            if got != alt[:len(got)]:
                problems.append(f"word {alt} started at {i} but continued as {got}")
            met[c] = met[c] or got == alt
            i += len(alt)
            continue
        if t in eos and not all(met):
            problems.append(f"EOS at {i} before every constraint appeared")
        i += 1
    if not all(met):
        problems.append(f"constraints {[c for c, m in enumerate(met) if not m]} never appeared (finish {finish})")
    return problems


def _run_and_check(run_mlxgp_json, gguf, tmp_path, ids, cfg, constraints, *extra):
    seqs = _generate(run_mlxgp_json, gguf, tmp_path, ids, {**cfg, "force_words_ids": constraints}, *extra)
    problems = []
    for s in seqs:
        problems += [f"{p}: {s['token_ids']}" for p in _check(s["token_ids"], constraints, [2], s["finish_reason"])]
    return seqs, problems


def test_force_words_greedy(setup, default_gguf, run_mlxgp_json, tmp_path):
    tok, w, chat, plain = setup
    cases = [  # (prompt ids, max_new_tokens, constraints)
        (plain, 12, [[w[" zebra"]]]),
        (plain, 10, [[w[" zebra"]], [w[" quantum"]], [w[" purple"]]]),
        (chat, 24, [[w[" Berlin"]]]),
        (chat, 20, [[w[" banana"], w[" ocean"]]]),  # disjunctive: either word
        (chat, 16, [[w[" the zebra"]], [w[" purple"]]]),
        (plain, 8, [[w[" blue ocean"], w[" banana"]], [w[" quantum"]]]),
    ]
    failures = []
    for ids, n, constraints in cases:
        _, problems = _run_and_check(run_mlxgp_json, default_gguf, tmp_path, ids, {"max_new_tokens": n}, constraints)
        failures += problems
    assert not failures, "\n".join(failures)


def test_force_words_sampling_batch(setup, default_gguf, run_mlxgp_json, tmp_path):
    """Sampling with several sequences (rows of one batch): every row meets the constraints itself."""
    tok, w, chat, plain = setup
    cfg = {"max_new_tokens": 14, "do_sample": True, "temperature": 1.0, "top_k": 50, "num_return_sequences": 4,
           "seed": 11}
    constraints = [[w[" quantum"], w[" banana"]], [w[" the zebra"]], [w[" purple"]]]
    seqs, problems = _run_and_check(run_mlxgp_json, default_gguf, tmp_path, chat, cfg, constraints)
    assert len(seqs) == 4
    assert not problems, "\n".join(problems)
    again, _ = _run_and_check(run_mlxgp_json, default_gguf, tmp_path, chat, cfg, constraints)
    assert [s["token_ids"] for s in again] == [s["token_ids"] for s in seqs]  # reproducible with the seed


def test_strict_start_at_the_budget_end(setup, default_gguf, run_mlxgp_json, tmp_path):
    """A budget that exactly fits the words: the output is the words, whole, in some order."""
    tok, w, chat, plain = setup
    words = [w[" the zebra"], w[" quantum"], w[" purple"]]
    n = sum(map(len, words))
    seqs, problems = _run_and_check(run_mlxgp_json, default_gguf, tmp_path, plain, {"max_new_tokens": n},
                                    [[x] for x in words])
    assert not problems, "\n".join(problems)
    gen = seqs[0]["token_ids"]
    assert len(gen) == n and sorted(gen) == sorted(sum(words, []))
    # With room for one free token first, the word that fits is started only at the end.
    free = _generate(run_mlxgp_json, default_gguf, tmp_path, plain, {"max_new_tokens": 6})[0]["token_ids"]
    assert w[" zebra"][0] not in free, "the model writes ' zebra' unprompted: pick another word"
    gen = _generate(run_mlxgp_json, default_gguf, tmp_path, plain,
                    {"max_new_tokens": 6, "force_words_ids": [w[" zebra"]]})[0]["token_ids"]
    assert gen[:5] == free[:5] and gen[5:] == w[" zebra"]
    # max_length counts the prompt when max_new_tokens is unset.
    gen = _generate(run_mlxgp_json, default_gguf, tmp_path, plain,
                    {"max_length": len(plain) + 4, "force_words_ids": [w[" zebra"]]})[0]["token_ids"]
    assert len(gen) == 4 and gen[-1:] == w[" zebra"]


def test_eos_waits_for_the_constraints(setup, default_gguf, run_mlxgp_json, tmp_path):
    tok, w, chat, plain = setup
    free = _generate(run_mlxgp_json, default_gguf, tmp_path, chat, {"max_new_tokens": 48})[0]
    assert free["finish_reason"] == "eos", "the model does not end this chat answer: pick another prompt"
    stop = len(free["token_ids"])
    forced = _generate(run_mlxgp_json, default_gguf, tmp_path, chat,
                       {"max_new_tokens": 48, "force_words_ids": [w[" quantum"]]})[0]
    gen = forced["token_ids"]
    assert not _check(gen, [[w[" quantum"]]], [2], forced["finish_reason"])
    # The unconstrained answer ended with EOS at step stop - 1; the constrained one runs the same
    # tokens until it diverges, so EOS there would mean it was not blocked (unless the word came first).
    if w[" quantum"][0] not in gen[:stop - 1]:
        assert len(gen) < stop or gen[stop - 1] != 2


def test_continuation_is_forced_after_a_natural_first_token(setup, default_gguf, run_mlxgp_json, tmp_path):
    """' a' is frequent: the first time the model writes it, ' zebra' must follow."""
    tok, w, chat, plain = setup
    a, zebra = w[" a zebra"][0], w[" a zebra"][1:]
    free = _generate(run_mlxgp_json, default_gguf, tmp_path, plain, {"max_new_tokens": 16})[0]["token_ids"]
    assert a in free, "the model does not write ' a' here: pick another prompt"
    k = free.index(a)
    gen = _generate(run_mlxgp_json, default_gguf, tmp_path, plain,
                    {"max_new_tokens": 16, "force_words_ids": [w[" a zebra"]]})[0]["token_ids"]
    assert gen[:k + 1] == free[:k + 1]  # identical until the first ' a' ...
    assert gen[k + 1:k + 1 + len(zebra)] == zebra  # ... which is then continued


def test_force_words_rejects_bad_input(default_gguf, run_mlxgp):
    proc = run_mlxgp("generate", "--model", default_gguf, "--prompt", "Hi", "--force-words-ids", "1,99999", check=False)
    assert proc.returncode == 2
    assert "force_words_ids token id 99999 is outside the vocabulary" in proc.stderr
    assert proc.stderr.count("\n") == 1


def _ref_force_words(constraints, eos, budget, prompt_len, row, scores):
    """An independent, row-at-a-time Python statement of the force_words_ids rules: the processed scores
    for the step after `row` (prompt + generated ids)."""
    items = [(c, alt) for c, alts in enumerate(constraints) for alt in alts]
    min_len = [min(map(len, alts)) for alts in constraints]
    k, met = [0] * len(items), [False] * len(constraints)
    for t in row[prompt_len:]:
        new = []
        for i, (c, alt) in enumerate(items):
            if k[i] and alt[k[i]] == t:
                new.append(k[i] + 1)  # the forced word goes on
            else:
                new.append(1 if alt[0] == t and not met[c] else 0)  # a word starts
        for i, (c, alt) in enumerate(items):
            met[c] = met[c] or new[i] == len(alt)
        k = [0 if met[c] else new[i] for i, (c, _) in enumerate(items)]
    left = budget - (len(row) - prompt_len)
    unmet = not all(met)
    out = scores.copy()
    active = [i for i in range(len(items)) if k[i]]
    if active:
        keep = {items[i][1][k[i]] for i in active}
    elif unmet and sum(m for c, m in enumerate(min_len) if not met[c]) >= left:
        needed = sum(m for c, m in enumerate(min_len) if not met[c])
        keep = {alt[0] for c, alt in items if not met[c] and len(alt) - min_len[c] + needed <= left}
        keep = keep or {alt[0] for c, alt in items if not met[c] and len(alt) == min_len[c]}
    else:
        keep = set(range(len(scores))) - (set(eos) if unmet else set())
    mask = np.array([t in keep for t in range(len(scores))])
    out[~mask] = -np.inf
    if unmet or active:
        if np.all(np.isneginf(out)):
            out[mask] = 0.0
    return out


def test_force_words_processor_matches_the_rules(run_mlxgp, tmp_path):
    """process-logits (device state machine, batched) vs _ref_force_words on random runs that follow the
    reference's own masks, so forced words, strict starts and EOS bans all occur."""
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(7)
    vocab, eos = 12, [0, 11]
    cases = []
    for case in range(40):
        constraints = [[list(rng.integers(1, 9, rng.integers(1, 4))) for _ in range(rng.integers(1, 3))]
                       for _ in range(rng.integers(1, 4))]
        constraints = [[[int(t) for t in alt] for alt in alts] for alts in constraints]
        budget, prompt_len, rows = int(rng.integers(4, 12)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        steps = int(rng.integers(0, budget))
        ids = []
        for _ in range(rows):
            row = list(map(int, rng.integers(1, vocab, prompt_len)))
            for _ in range(steps):
                s = _ref_force_words(constraints, eos, budget, prompt_len, row, rng.standard_normal(vocab))
                choice = rng.choice(np.flatnonzero(np.isfinite(s)))
                row.append(int(choice))
            ids.append(row)
        scores = (rng.standard_normal((rows, vocab)) * 2).astype(np.float32)
        if case % 5 == 0:
            scores[:, rng.integers(0, vocab, 4)] = -np.inf
        cases.append((constraints, budget, prompt_len, ids, scores))
    save_file({f"scores_{i}": c[4] for i, c in enumerate(cases)}, str(tmp_path / "in.safetensors"))
    (tmp_path / "gen.json").write_text(json.dumps(
        [{"force_words_ids": c[0], "max_new_tokens": c[1],
          "eos_token_id": eos} for c in cases]))
    (tmp_path / "ids.json").write_text(json.dumps([c[3] for c in cases]))
    run_mlxgp("process-logits", "--config", tmp_path / "gen.json", "--scores", tmp_path / "in.safetensors",
              "--input-ids-file", tmp_path / "ids.json", "--prompt-len", ",".join(str(c[2]) for c in cases),
              "--out", tmp_path / "out.safetensors")
    ours = load_file(str(tmp_path / "out.safetensors"))
    failures = []
    for i, (constraints, budget, prompt_len, ids, scores) in enumerate(cases):
        for r, row in enumerate(ids):
            ref = _ref_force_words(constraints, eos, budget, prompt_len, row, scores[r])
            got = ours[f"scores_{i}"][r]
            if not (np.array_equal(np.isneginf(got), np.isneginf(ref)) and np.allclose(got[np.isfinite(ref)],
                                                                                         ref[np.isfinite(ref)])):
                failures.append(f"case {i} row {r}: {constraints} budget {budget} ids {row}: "
                                f"ours {np.flatnonzero(np.isfinite(got))} ref {np.flatnonzero(np.isfinite(ref))}")
    assert not failures, "\n".join(failures[:10])
