"""Structured outputs (json_schema, json_object, regex, EBNF grammar) against the reference run live
here: transformers' greedy `generate()` on the default model (the GGUF dequantized to fp32, as mlxgp
runs it with --dtype float32) with xgrammar's own transformers LogitsProcessor (the xgrammar 0.2.8
wheel) over the same grammar. Tokens must be identical, except at a reference near-tie of the
constrained scores (top-2 gap < 1e-4, test_generate_parity's rule); the text must satisfy the
constraint (jsonschema validates the JSON, `re.fullmatch` the regex). The same holds with speculative
decoding (self-speculation with the first layers as draft) and prompt-lookup decoding, which are exact
for greedy decoding. Beam search (3 beams) against transformers' beam search constrained by a
prefix_allowed_tokens_fn that replays each beam's tokens through an xgrammar matcher: sequences
identical, scores within 1e-3 (the default model's beam tolerance). Then: sampled rows
(num_return_sequences, batched requests with their own constraint) all satisfy theirs and every batched
row equals its solo run; the Python package gives the CLI's tokens; bad constraints and unsupported
combinations fail with one `[grammar]` / `[config]` line and exit 2."""
import functools
import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_generate_parity import NEAR_TIE  # noqa: E402

N = 48
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                          "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
          "required": ["name", "age", "languages"], "additionalProperties": False}
REGEX = r"(Yes|No), because [a-z ,]{5,60}\."
GRAMMAR = 'root ::= "The answer is " digits "."\ndigits ::= [0-9] | [0-9] digits\n'
CASES = {
    "json_schema": ("Describe a famous programmer as JSON with name, age and languages.", {"json_schema": PERSON}),
    "json_object": ('Reply with the JSON object {"a": 1, "b": 2} and nothing else.', {"json_object": True}),
    "regex": ("Is the sea salty? Answer yes or no and say why.", {"regex": REGEX}),
    "grammar": ("What is 12 times 12?", {"grammar": GRAMMAR}),
}


def _chat_ids(tok, text):
    return tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True,
                                   return_dict=False)


def _reference(model, tok, ids, constraint):
    """transformers greedy generate with xgrammar's LogitsProcessor: (new ids, processed scores per step)."""
    import torch
    import xgrammar as xgr
    from xgrammar.contrib.hf import LogitsProcessor

    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=model.config.vocab_size, stop_token_ids=eos)
    compiler = xgr.GrammarCompiler(info)
    if "json_schema" in constraint:
        compiled = compiler.compile_json_schema(json.dumps(constraint["json_schema"]))
    elif "json_object" in constraint:
        compiled = compiler.compile_builtin_json_grammar()
    elif "regex" in constraint:
        compiled = compiler.compile_regex(constraint["regex"])
    else:
        compiled = compiler.compile_grammar(constraint["grammar"])
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=N, eos_token_id=eos, pad_token_id=eos[0],
                             logits_processor=[LogitsProcessor(compiled)], output_scores=True,
                             return_dict_in_generate=True)
    new = out.sequences[0, len(ids):].tolist()
    return new, [s[0].float() for s in out.scores]


def _constraint_flags(tmp_path, constraint):
    if "json_schema" in constraint:
        f = tmp_path / "schema.json"
        f.write_text(json.dumps(constraint["json_schema"]))
        return ["--json-schema", f]
    if "json_object" in constraint:
        return ["--json-object"]
    if "regex" in constraint:
        return ["--regex", constraint["regex"]]
    f = tmp_path / "grammar.ebnf"
    f.write_text(constraint["grammar"])
    return ["--grammar", f]


def _check_text(text, constraint):
    if "json_schema" in constraint:
        import jsonschema

        jsonschema.validate(json.loads(text), constraint["json_schema"])
    elif "json_object" in constraint:
        json.loads(text)
    elif "regex" in constraint:
        assert re.fullmatch(constraint["regex"], text), text
    else:
        assert re.fullmatch(r"The answer is [0-9]+\.", text), text


@pytest.fixture(scope="module")
def references(hf_default):
    """The transformers + xgrammar greedy run of each case, computed once: {kind: (ids, new ids, scores)}."""
    model, tok = hf_default
    cache = {}

    def get(kind):
        if kind not in cache:
            text, constraint = CASES[kind]
            ids = _chat_ids(tok, text)
            cache[kind] = (ids, *_reference(model, tok, ids, constraint))
        return cache[kind]

    return get


MODES = {"plain": [], "speculative": ["--use-speculative", "--draft-layers", "8", "--num-draft-tokens", "3"],
         "prompt-lookup": ["--prompt-lookup-num-tokens", "3"]}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", list(CASES))
def test_greedy_matches_transformers_with_xgrammar(hf_default, references, default_gguf, run_mlxgp_json, tmp_path,
                                                   kind, mode):
    model, tok = hf_default
    _, constraint = CASES[kind]
    ids, ref, scores = references(kind)
    got = run_mlxgp_json("generate", "--model", default_gguf, "--dtype", "float32", "--input-ids",
                         ",".join(map(str, ids)), "--max-new-tokens", N, *_constraint_flags(tmp_path, constraint),
                         *MODES[mode])
    ours = got["sequences"][0]["token_ids"]
    eos = model.generation_config.eos_token_id
    ref_trimmed = ref[:ref.index(eos) + 1] if eos in ref else ref  # transformers pads after EOS
    same = 0
    while same < min(len(ours), len(ref_trimmed)) and ours[same] == ref_trimmed[same]:
        same += 1
    print(f"\nstructured output {kind} ({mode}): {same}/{len(ref_trimmed)} tokens identical to transformers + xgrammar; "
          f"finish {got['sequences'][0]['finish_reason']}; text {got['sequences'][0]['text']!r}")
    if same < len(ref_trimmed):
        top = scores[same].topk(2).values
        gap = float(top[0] - top[1])
        assert gap < NEAR_TIE, f"{kind}: diverged at step {same} (reference gap {gap:.2e}): {ours} vs {ref_trimmed}"
        return
    assert ours == ref_trimmed
    if got["sequences"][0]["finish_reason"] == "eos":
        _check_text(got["sequences"][0]["text"], constraint)
    else:  # cut by the budget: a prefix of a valid text, as the reference's
        assert got["sequences"][0]["finish_reason"] == "length" and len(ours) == N


def _beam_reference(model, tok, ids, constraint, num_beams):
    """transformers beam search whose allowed tokens come from an xgrammar matcher replaying each beam's
    generated tokens (prefix_allowed_tokens_fn): [(tokens, score)] best first."""
    import torch
    import xgrammar as xgr

    eos = model.generation_config.eos_token_id
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=model.config.vocab_size, stop_token_ids=[eos])
    compiled = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(constraint["json_schema"]))
    bitmask = xgr.allocate_token_bitmask(1, model.config.vocab_size)
    vocab = torch.arange(model.config.vocab_size)

    def allowed(_, input_ids):
        matcher = xgr.GrammarMatcher(compiled)
        for t in input_ids[len(ids):].tolist():
            if matcher.is_terminated():
                break
            assert matcher.accept_token(t)
        if matcher.is_terminated():
            return [eos]
        matcher.fill_next_token_bitmask(bitmask)
        bits = bitmask[0]
        mask = ((bits[vocab // 32] >> (vocab % 32)) & 1).bool()
        return vocab[mask].tolist()

    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, num_beams=num_beams, num_return_sequences=num_beams, max_new_tokens=24,
                             eos_token_id=eos, pad_token_id=eos, prefix_allowed_tokens_fn=allowed,
                             return_dict_in_generate=True, output_scores=True)
    res = []
    for i in range(out.sequences.shape[0]):
        seq = out.sequences[i, len(ids):].tolist()
        if eos in seq:
            seq = seq[:seq.index(eos) + 1]
        res.append((seq, float(out.sequences_scores[i])))
    return res


def test_beam_search_matches_transformers_with_xgrammar_allowed_tokens(hf_default, default_gguf, run_mlxgp_json,
                                                                       tmp_path):
    model, tok = hf_default
    _, constraint = CASES["json_schema"]
    ids = _chat_ids(tok, "Describe a famous programmer as JSON with name, age and languages.")
    ref = _beam_reference(model, tok, ids, constraint, 3)
    got = run_mlxgp_json("generate", "--model", default_gguf, "--dtype", "float32", "--input-ids",
                         ",".join(map(str, ids)), "--max-new-tokens", 24, "--num-beams", 3, "--num-return-sequences", 3,
                         *_constraint_flags(tmp_path, constraint))["sequences"]
    assert [s["token_ids"] for s in got] == [r[0] for r in ref]
    worst = max(abs(s["score"] - r[1]) for s, r in zip(got, ref))
    print(f"\nstructured beams: {len(got)}/{len(ref)} sequences identical to transformers (xgrammar allowed tokens), "
          f"max |score diff| {worst:.2e}")
    assert worst < 1e-3
    for s in got:
        if s["finish_reason"] == "eos":
            _check_text(s["text"], constraint)


def test_sampled_and_batched_rows_hold_their_constraints(hf_default, default_gguf, run_mlxgp, tmp_path):
    """Sampled rows (three per request, own seeds) each satisfy their request's constraint; requests
    with different constraints share a batch, and each equals its solo run."""
    _, tok = hf_default
    requests = []
    for i, (kind, (text, constraint)) in enumerate(CASES.items()):
        config = dict(constraint, do_sample=True, temperature=0.9, seed=40 + i, num_return_sequences=3,
                      max_new_tokens=64)
        requests.append({"input_ids": _chat_ids(tok, text), "config": config})
    requests.append({"input_ids": _chat_ids(tok, "Say hello."), "config": {"max_new_tokens": 8}})  # unconstrained
    f = tmp_path / "requests.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in requests))
    out = run_mlxgp("generate", "--model", default_gguf, "--dtype", "float32", "--prompts-file", f, "--json")
    docs = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(docs) == len(requests)
    checked = 0
    for req, doc in zip(requests[:-1], docs):
        constraint = {k: v for k, v in req["config"].items() if k in ("json_schema", "json_object", "regex", "grammar")}
        for seq in doc["sequences"]:
            if seq["finish_reason"] == "eos":
                _check_text(seq["text"], constraint)
                if "json_schema" in constraint:  # properties come in the schema's order, not sorted
                    assert list(json.loads(seq["text"])) == ["name", "age", "languages"], seq["text"]
                checked += 1
        solo_file = tmp_path / "one.jsonl"
        solo_file.write_text(json.dumps(req) + "\n")
        solo = json.loads(run_mlxgp("generate", "--model", default_gguf, "--dtype", "float32", "--prompts-file",
                                    solo_file, "--json").stdout)
        assert [s["token_ids"] for s in solo["sequences"]] == [s["token_ids"] for s in doc["sequences"]]
    print(f"\nsampled constrained rows: {checked}/{3 * (len(requests) - 1)} ended within the budget and satisfy "
          "their constraint")
    assert checked >= 2 * (len(requests) - 1)
    assert len({tuple(s["token_ids"]) for s in docs[0]["sequences"]}) > 1  # the rows really sample


def test_python_package_matches_cli(default_gguf, run_mlxgp_json, tmp_path):
    import mlx_gen_parity as mgp

    model, tok = mgp.load(str(default_gguf), dtype="float32")
    cfg = mgp.GenerationConfig(json_schema=PERSON, max_new_tokens=N)
    ours = mgp.generate(model, tok, "Describe a famous programmer as JSON.", cfg)
    cli = run_mlxgp_json("generate", "--model", default_gguf, "--dtype", "float32", "--prompt",
                         "Describe a famous programmer as JSON.", "--max-new-tokens", N,
                         *_constraint_flags(tmp_path, {"json_schema": PERSON}))
    assert ours["sequences"][0]["token_ids"] == cli["sequences"][0]["token_ids"]
    regex = mgp.generate(model, tok, "Is water wet?", mgp.GenerationConfig(regex=REGEX, max_new_tokens=N))
    if regex["sequences"][0]["finish_reason"] == "eos":
        _check_text(regex["sequences"][0]["text"], {"regex": REGEX})


@pytest.mark.parametrize("flags,needle", [
    (["--regex", "(unclosed"], "[grammar] invalid regex"),
    (["--json-object", "--regex", "a+"], "[config] json_schema, json_object, regex and grammar are exclusive"),
    (["--json-object", "--ignore-eos"], "[config] structured output needs an EOS token"),
    (["--json-schema", "/nonexistent/schema.json"], "[config]"),
])
def test_bad_constraints_fail_in_one_line(default_gguf, run_mlxgp, flags, needle):
    proc = run_mlxgp("generate", "--model", default_gguf, "--prompt", "Hi", "--max-new-tokens", 4, *flags, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(needle), proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("schema,needle", [
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "the keyword 'uniqueItems'"),
    ({"type": "object", "properties": {"n": {"oneOf": [{"type": "integer"}, {"type": "number"}]}}}, "oneOf"),
    ({"type": "object", "properties": {"c": {"type": "string", "pattern": "^[A-Z]+$", "maxLength": 3}}}, "maxLength"),
    # xgrammar builds objects from "properties" alone: a required name missing there would never appear.
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a", "b"]}, "'b'"),
    ({"type": "object", "required": ["zz"]}, "'zz'"),
    # draft-07's spelling of dependentRequired, and a format xgrammar has no pattern for.
    ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
      "dependencies": {"a": ["b"]}}, "the keyword 'dependencies'"),
    ({"type": "object", "properties": {"r": {"type": "string", "format": "regex"}}}, "the format 'regex'"),
    # xgrammar's compile time explodes with the nesting (1,000 levels: over a minute, the server's engine waiting).
    (functools.reduce(lambda inner, _: {"type": "array", "items": inner}, range(200), {"type": "integer"}),
     "nests deeper than 128 levels"),
])
def test_schema_enforced_only_in_part_is_refused(default_gguf, run_mlxgp, tmp_path, schema, needle):
    """xgrammar drops or loosens these (silently or with a warning); mlxgp refuses them instead."""
    f = tmp_path / "s.json"
    f.write_text(json.dumps(schema))
    proc = run_mlxgp("generate", "--model", default_gguf, "--prompt", "Hi", "--json-schema", f, check=False)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[grammar] json_schema") and needle in lines[0], proc.stderr


def test_invalid_schema_fails_in_one_line(default_gguf, run_mlxgp, tmp_path):
    f = tmp_path / "bad.json"
    f.write_text('{"type": "object", "properties": {"a": {"type": "no-such-type"}}}')
    proc = run_mlxgp("generate", "--model", default_gguf, "--prompt", "Hi", "--json-schema", f, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("[grammar] invalid json_schema"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("regex,needle", [(r"\Aab\Z", "Escape sequence"), ("a$b", "'$' should be at the end"),
                                          ("x{2}^", "'^' should be at the start")])
def test_regex_xgrammar_only_warns_about_is_refused(default_gguf, run_mlxgp, regex, needle):
    """xgrammar matches these literally or drops the anchor with a warning on stderr: refused in one line."""
    proc = run_mlxgp("generate", "--model", default_gguf, "--prompt", "Letters:", "--regex", regex, check=False)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[grammar] regex cannot be enforced exactly") and needle in lines[0]


def test_escaped_punctuation_and_control_characters_are_literal(default_gguf, run_mlxgp_json):
    """re.escape's output (an escaped space, hyphen or newline): xgrammar warns that it has no such escape and
    matches the character itself, which is Python's meaning too: accepted, and the text matches."""
    regex = re.escape("Yes - it is\n") + "[a-z]{1,5}"
    got = run_mlxgp_json("generate", "--model", default_gguf, "--prompt", "Answer:", "--regex", regex,
                         "--max-new-tokens", 12)
    seq = got["sequences"][0]
    assert seq["finish_reason"] == "eos" and re.fullmatch(regex, seq["text"]), seq


def test_a_grammar_without_text_and_a_blocked_end_fail_without_a_masked_token(default_gguf, run_mlxgp, tmp_path):
    """A grammar that matches nothing, and min_new_tokens against the EOS a finished constraint needs, fail in
    one line; the streamed text never holds the token argmax picks from an all -inf row, with or without beams."""
    g = tmp_path / "empty.gbnf"
    g.write_text('root ::= x\nx ::= x "a"\n')
    proc = run_mlxgp("generate", "--model", default_gguf, "--prompt", "Hi", "--grammar", g, check=False)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.strip() == "[grammar] the constraint allows no token after 0 generated tokens and cannot " \
        "end there: it matches no text that starts so"
    f = tmp_path / "yes_no.json"
    f.write_text(json.dumps({"enum": ["yes", "no"]}))
    # Prompt lookup and self-speculation verify with the whole pipeline's scores: they refuse the masked row at
    # the same step, naming it (before, prompt lookup emitted argmax's <|endoftext|> and ran on past the JSON).
    for extra in ([], ["--num-beams", 3], *MODES.values()):
        proc = run_mlxgp("generate", "--model", default_gguf, "--prompt", "JSON:", "--json-schema", f,
                         "--min-new-tokens", 40, "--max-new-tokens", 40, *extra, check=False)
        assert proc.returncode == 2, (extra, proc.stdout, proc.stderr)
        assert "<|endoftext|>" not in proc.stdout + proc.stderr
        assert any(why in proc.stderr.strip().splitlines()[-1] for why in (
            "no token satisfies both the constraint and the other settings", "mask every token of a row")), extra


def test_group_beam_search_holds_the_constraint(default_gguf, run_mlxgp_json):
    """Groups of several beams: a group whose beams can only end carries -inf beams (as BeamSearchScorer
    takes them) and then padding; neither is an error, and every returned sequence satisfies the regex."""
    regex = r"(Yes|No), because [a-z ]+\."
    got = run_mlxgp_json("generate", "--model", default_gguf, "--prompt", "Is the sea salty?", "--regex", regex,
                         "--num-beams", 4, "--num-beam-groups", 2, "--diversity-penalty", 1.0,
                         "--num-return-sequences", 4, "--max-new-tokens", 30)
    assert len(got["sequences"]) == 4
    for seq in got["sequences"]:
        assert seq["finish_reason"] == "eos" and re.fullmatch(regex, seq["text"]), seq
