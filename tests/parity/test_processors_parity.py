"""Logits-processor parity: transformers' own processor classes and `mlxgp process-logits` get the
same scores [B, V] and input ids [B, T] and must give the same output (same +-inf pattern, finite
values within 1e-5). All cases run in one mlxgp process (batch mode) to keep the test fast."""
import json

import numpy as np
import pytest

ATOL = 1e-5
EOS = [2, 5]


def _rng_scores(rng, b, v, scale=3.0):
    return (rng.standard_normal((b, v)) * scale).astype(np.float32)


class _OpenAIRef:
    """OpenAI/vLLM semantics in numpy: logits -= frequency * count + presence * (count > 0), counts over
    the generated ids (after the prompt) only; then logit_bias (last duplicate wins) is added."""

    def __init__(self, prompt_len, presence=0.0, frequency=0.0, bias=()):
        self.prompt_len, self.presence, self.frequency, self.bias = prompt_len, presence, frequency, dict(bias)

    def __call__(self, input_ids, scores):
        import torch

        s = scores.numpy().copy()
        ids = input_ids.numpy()
        for b in range(s.shape[0]):
            counts = np.bincount(ids[b, self.prompt_len:], minlength=s.shape[1]).astype(np.float32)
            s[b] -= np.float32(self.frequency) * counts + np.float32(self.presence) * (counts > 0).astype(np.float32)
        for token, bias in self.bias.items():
            s[:, token] += np.float32(bias)
        return torch.from_numpy(s)


def _cases():
    """(name, mlxgp config, transformers processors factory, scores, ids, prompt_len)."""
    import transformers.generation.logits_process as lp

    rng = np.random.default_rng(1234)
    cases = []

    def add(name, config, hf, scores, ids, prompt_len=None, tie_order_free=False):
        ids = np.asarray(ids, dtype=np.int64)
        cases.append((name, config, hf, scores.astype(np.float32), ids, prompt_len or ids.shape[1], tie_order_free))

    rep_ids = [[3, 7, 7, 1, 9, 3, 0, 49], [10, 11, 12, 13, 14, 15, 16, 17], [4, 4, 4, 4, 4, 4, 4, 4]]
    for pen in (1.3, 0.7, 2.0):
        add(f"repetition_penalty={pen}", {"repetition_penalty": pen},
            lambda pen=pen: [lp.RepetitionPenaltyLogitsProcessor(pen)], _rng_scores(rng, 3, 50), rep_ids)
    s = _rng_scores(rng, 3, 50)
    s[0, 3] = -np.inf
    s[1, 10] = -np.inf
    add("repetition_penalty -inf present", {"repetition_penalty": 1.5},
        lambda: [lp.RepetitionPenaltyLogitsProcessor(1.5)], s, rep_ids)
    add("repetition_penalty ties", {"repetition_penalty": 1.2},
        lambda: [lp.RepetitionPenaltyLogitsProcessor(1.2)], np.round(_rng_scores(rng, 3, 50)), rep_ids)
    add("repetition_penalty large vocab", {"repetition_penalty": 1.1},
        lambda: [lp.RepetitionPenaltyLogitsProcessor(1.1)], _rng_scores(rng, 2, 4000),
        rng.integers(0, 4000, (2, 300)))

    ngram_ids = [[1, 2, 3, 1, 2, 4, 1, 2], [5, 5, 5, 5, 5, 5, 5, 5], [1, 2, 3, 4, 5, 6, 7, 8]]
    for n in (1, 2, 3, 4, 8, 9):
        add(f"no_repeat_ngram_size={n}", {"no_repeat_ngram_size": n},
            lambda n=n: [lp.NoRepeatNGramLogitsProcessor(n)], _rng_scores(rng, 3, 20), ngram_ids)
    add("no_repeat_ngram_size=2 random", {"no_repeat_ngram_size": 2},
        lambda: [lp.NoRepeatNGramLogitsProcessor(2)], _rng_scores(rng, 4, 12), rng.integers(0, 12, (4, 60)))

    sb = [[[3], 2.5], [[1, 2], -1.5], [[7, 1, 2], 4.0], [[4, 4], 1.0], [[9, 2], 0.5], [[3], -1.0], [[0, 7], 3.0]]
    add("sequence_bias", {"sequence_bias": sb}, lambda: [lp.SequenceBiasLogitsProcessor(sb)],
        _rng_scores(rng, 4, 20), [[0, 7, 1], [4, 4, 9], [1, 4, 4], [3, 3, 0]])
    bad = [[3], [1, 2], [7, 1, 2], [4, 4, 4], [5], [9, 6], [8, 6]]  # [5] is an EOS: HF drops it
    bad_ids = [[0, 7, 1], [4, 4, 9], [1, 4, 4], [3, 3, 8]]
    add("bad_words_ids", {"bad_words_ids": bad, "eos_token_id": EOS},
        lambda: [lp.NoBadWordsLogitsProcessor(bad, EOS)], _rng_scores(rng, 4, 20), bad_ids)
    add("bad_words_ids prefix longer than context", {"bad_words_ids": [[1, 2, 3, 4, 5, 6], [2]]},
        lambda: [lp.NoBadWordsLogitsProcessor([[1, 2, 3, 4, 5, 6], [2]])], _rng_scores(rng, 2, 20), [[1, 2], [2, 3]])
    for t in (6, 7, 9):
        add(f"exponential_decay_length_penalty T={t}", {"exponential_decay_length_penalty": [2, 1.5], "eos_token_id": EOS},
            lambda: [lp.ExponentialDecayLengthPenalty((2, 1.5), EOS, 4)], _rng_scores(rng, 3, 20),
            rng.integers(0, 20, (3, t)), prompt_len=4)
    s = _rng_scores(rng, 2, 20)
    s[0, 2] = -np.inf
    add("exponential_decay_length_penalty -inf eos", {"exponential_decay_length_penalty": [0, 0.8], "eos_token_id": EOS},
        lambda: [lp.ExponentialDecayLengthPenalty((0, 0.8), EOS, 3)], s, rng.integers(0, 20, (2, 6)), prompt_len=3)
    for t in (4, 9, 10, 12):
        add(f"min_length=10 T={t}", {"min_length": 10, "eos_token_id": EOS},
            lambda: [lp.MinLengthLogitsProcessor(10, EOS)], _rng_scores(rng, 2, 30), rng.integers(0, 30, (2, t)))
    for t in (4, 6, 7, 9):
        # generate() with min_new_tokens=3 and a 4-token prompt: min_length becomes 7, both processors run.
        add(f"min_new_tokens=3 prompt=4 T={t}", {"min_new_tokens": 3, "eos_token_id": EOS},
            lambda: [lp.MinLengthLogitsProcessor(7, EOS), lp.MinNewTokensLengthLogitsProcessor(4, 3, EOS)],
            _rng_scores(rng, 2, 30), rng.integers(0, 30, (2, t)), prompt_len=4)

    add("suppress_tokens", {"suppress_tokens": [1, 3, 29, 999]},
        lambda: [lp.SuppressTokensLogitsProcessor([1, 3, 29, 999])], _rng_scores(rng, 3, 30), rng.integers(0, 30, (3, 5)))
    for t in (5, 6):
        add(f"begin_suppress_tokens T={t}", {"begin_suppress_tokens": [0, 4]},
            lambda: [lp.SuppressTokensAtBeginLogitsProcessor([0, 4], 5)], _rng_scores(rng, 2, 30),
            rng.integers(0, 30, (2, t)), prompt_len=5)
    for t in (1, 2):
        add(f"forced_bos_token_id T={t}", {"forced_bos_token_id": 7},
            lambda: [lp.ForcedBOSTokenLogitsProcessor(7)], _rng_scores(rng, 2, 30), rng.integers(0, 30, (2, t)))
    for t in (8, 9):
        add(f"forced_eos_token_id max_length=10 T={t}", {"forced_eos_token_id": [2, 6], "max_length": 10},
            lambda: [lp.ForcedEOSTokenLogitsProcessor(10, [2, 6])], _rng_scores(rng, 2, 30), rng.integers(0, 30, (2, t)))
    add("forced_eos_token_id max_new_tokens", {"forced_eos_token_id": 2, "max_new_tokens": 4},
        lambda: [lp.ForcedEOSTokenLogitsProcessor(9, [2])], _rng_scores(rng, 2, 30), rng.integers(0, 30, (2, 8)),
        prompt_len=5)

    s = _rng_scores(rng, 2, 20)
    s[0, 1], s[0, 2], s[1, 3], s[1, 4] = np.inf, -np.inf, np.nan, -np.inf
    add("remove_invalid_values", {"remove_invalid_values": True}, lambda: [lp.InfNanRemoveLogitsProcessor()], s,
        [[1], [2]])
    s = _rng_scores(rng, 3, 40)
    s[1, :5] = -np.inf
    add("renormalize_logits", {"renormalize_logits": True}, lambda: [lp.LogitNormalization()], s,
        [[1], [2], [3]])

    def warper_cases(name, cfg, hf, tie_order_free=False):
        base = {"do_sample": True, "top_k": 0, **cfg}
        add(name, base, hf, _rng_scores(rng, 3, 100), [[0], [1], [2]])
        add(name + " ties", base, hf, np.round(_rng_scores(rng, 3, 100, 1.5)), [[0], [1], [2]],
            tie_order_free=tie_order_free)
        add(name + " all-equal", base, hf, np.full((2, 50), 0.25, np.float32), [[0], [1]],
            tie_order_free=tie_order_free)
        s = _rng_scores(rng, 2, 100)
        s[:, ::3] = -np.inf
        add(name + " -inf present", base, hf, s, [[0], [1]])
        add(name + " peaked", base, hf, _rng_scores(rng, 2, 1000, 8.0), [[0], [1]])

    for p in (0.3, 0.9):
        # TopPLogitsWarper cuts inside a group of equal logits in torch.sort's order, which is unstable
        # (all-equal 50: [38, 26, 27, ...]); which tied tokens go is arbitrary, how many is not.
        warper_cases(f"top_p={p}", {"top_p": p}, lambda p=p: [lp.TopPLogitsWarper(p)], tie_order_free=True)
    for k in (1, 5):
        warper_cases(f"top_k={k}", {"top_k": k}, lambda k=k: [lp.TopKLogitsWarper(k)])
    for p in (0.05, 0.3):
        warper_cases(f"min_p={p}", {"min_p": p}, lambda p=p: [lp.MinPLogitsWarper(p)])
    for p in (0.5, 0.9):
        warper_cases(f"typical_p={p}", {"typical_p": p}, lambda p=p: [lp.TypicalLogitsWarper(p)])
    for e in (0.002, 0.05):
        warper_cases(f"epsilon_cutoff={e}", {"epsilon_cutoff": e}, lambda e=e: [lp.EpsilonLogitsWarper(e)])
    for e in (0.002, 0.05):
        warper_cases(f"eta_cutoff={e}", {"eta_cutoff": e}, lambda e=e: [lp.EtaLogitsWarper(e)])

    combo = {"repetition_penalty": 1.2, "no_repeat_ngram_size": 2, "min_new_tokens": 4, "eos_token_id": EOS,
             "suppress_tokens": [9], "do_sample": True, "temperature": 0.8, "top_k": 30, "top_p": 0.9,
             "min_p": 0.05, "renormalize_logits": True}
    add("combined pipeline", combo, lambda: [
        lp.RepetitionPenaltyLogitsProcessor(1.2), lp.NoRepeatNGramLogitsProcessor(2),
        lp.MinLengthLogitsProcessor(9, EOS), lp.MinNewTokensLengthLogitsProcessor(5, 4, EOS),
        lp.SuppressTokensLogitsProcessor([9]), lp.TemperatureLogitsWarper(0.8), lp.TopKLogitsWarper(30),
        lp.TopPLogitsWarper(0.9), lp.MinPLogitsWarper(0.05), lp.LogitNormalization()],
        _rng_scores(rng, 3, 60), rng.integers(0, 12, (3, 7)), prompt_len=5)
    combo3 = {"sequence_bias": [[[4], -2.0], [[1, 2], 1.0]], "repetition_penalty": 1.3, "bad_words_ids": [[2, 3]],
              "exponential_decay_length_penalty": [1, 1.2], "eos_token_id": EOS, "forced_eos_token_id": [5],
              "max_length": 9}
    add("combined biases", combo3, lambda: [
        lp.SequenceBiasLogitsProcessor([[[4], -2.0], [[1, 2], 1.0]]), lp.RepetitionPenaltyLogitsProcessor(1.3),
        lp.NoBadWordsLogitsProcessor([[2, 3]], EOS), lp.ForcedEOSTokenLogitsProcessor(9, [5]),
        lp.ExponentialDecayLengthPenalty((1, 1.2), EOS, 4)],
        _rng_scores(rng, 3, 30), [[1, 2, 1, 2, 0, 2, 2], [0, 0, 4, 1, 2, 3, 3], [6, 6, 6, 6, 6, 6, 1]], prompt_len=4)
    combo2 = {"do_sample": True, "top_k": 10, "typical_p": 0.8, "epsilon_cutoff": 0.01, "eta_cutoff": 0.01,
              "remove_invalid_values": True, "begin_suppress_tokens": [0]}
    add("combined warpers", combo2, lambda: [
        lp.InfNanRemoveLogitsProcessor(), lp.SuppressTokensAtBeginLogitsProcessor([0], 3), lp.TopKLogitsWarper(10),
        lp.TypicalLogitsWarper(0.8), lp.EpsilonLogitsWarper(0.01), lp.EtaLogitsWarper(0.01)],
        _rng_scores(rng, 2, 80), rng.integers(0, 80, (2, 3)))
    # OpenAI-style penalties vs the numpy reference: generated ids repeat, the prompt repeats tokens
    # that must not count, batch > 1, -inf present, ties and all-equal scores.
    gen_ids = [[3, 3, 3, 3, 1, 1, 2, 5], [9, 9, 8, 7, 7, 7, 7, 0], [4, 5, 6, 4, 4, 4, 4, 4]]
    for pres, freq in ((0.5, 0.0), (0.0, 0.7), (1.2, 0.4), (-0.6, 0.3), (2.0, -2.0)):
        add(f"presence={pres} frequency={freq}", {"presence_penalty": pres, "frequency_penalty": freq},
            lambda pres=pres, freq=freq: [_OpenAIRef(4, pres, freq)], _rng_scores(rng, 3, 12), gen_ids, prompt_len=4)
    s = _rng_scores(rng, 3, 12)
    s[0, 3], s[1, 7], s[2, :6] = -np.inf, -np.inf, -np.inf
    add("presence/frequency -inf present", {"presence_penalty": 0.8, "frequency_penalty": 0.5},
        lambda: [_OpenAIRef(4, 0.8, 0.5)], s, gen_ids, prompt_len=4)
    add("presence/frequency all-equal", {"presence_penalty": 0.25, "frequency_penalty": 0.25},
        lambda: [_OpenAIRef(2, 0.25, 0.25)], np.zeros((3, 12), np.float32), gen_ids, prompt_len=2)
    add("presence/frequency prompt only", {"presence_penalty": 1.0, "frequency_penalty": 1.0},
        lambda: [_OpenAIRef(8, 1.0, 1.0)], _rng_scores(rng, 3, 12), gen_ids)
    add("frequency large vocab", {"frequency_penalty": 0.1}, lambda: [_OpenAIRef(50, 0.0, 0.1)],
        _rng_scores(rng, 2, 3000), rng.integers(0, 3000, (2, 400)), prompt_len=50)
    lb = [[3, -100.0], [7, 2.5], [0, 1.0], [3, -1.5], [11, 0.25]]
    add("logit_bias", {"logit_bias": lb}, lambda: [_OpenAIRef(1, bias=[(t, b) for t, b in lb])],
        _rng_scores(rng, 3, 12), [[0], [1], [2]])
    add("logit_bias ties at the top-k boundary", {"logit_bias": [[2, 1.0], [5, 1.0]], "do_sample": True, "top_k": 3},
        lambda: [_OpenAIRef(1, bias=[(2, 1.0), (5, 1.0)]), lp.TopKLogitsWarper(3)],
        np.tile(np.array([[2, 1, 1, 0, 0, 1, -1, 2]], np.float32), (2, 1)), [[0], [1]])
    combo = {"repetition_penalty": 1.3, "presence_penalty": 0.4, "frequency_penalty": 0.2, "logit_bias": {"5": -2.0},
             "do_sample": True, "temperature": 0.7, "top_k": 6, "top_p": 0.8, "renormalize_logits": True}
    add("penalties + warpers pipeline order", combo, lambda: [
        lp.RepetitionPenaltyLogitsProcessor(1.3), _OpenAIRef(3, 0.4, 0.2, [(5, -2.0)]), lp.TemperatureLogitsWarper(0.7),
        lp.TopKLogitsWarper(6), lp.TopPLogitsWarper(0.8), lp.LogitNormalization()],
        _rng_scores(rng, 3, 12), gen_ids, prompt_len=3)
    return cases


def _same(ours, ref):
    """None when equal, else a description of the first difference."""
    if ours.shape != ref.shape:
        return f"shape {ours.shape} vs {ref.shape}"
    if not np.array_equal(np.isnan(ours), np.isnan(ref)):
        return "nan pattern differs"
    for sign in (np.inf, -np.inf):
        if not np.array_equal(ours == sign, ref == sign):
            return f"{sign} pattern differs at {np.argwhere((ours == sign) != (ref == sign))[:5].tolist()}"
    fin = np.isfinite(ref)
    diff = float(np.max(np.abs(ours[fin] - ref[fin]), initial=0.0))
    return None if diff <= ATOL else f"max |diff| {diff}"


def _same_up_to_ties(scores, ours, ref):
    """For warpers that cut inside a group of tied scores: per row, the same number of tokens of each
    score value is removed (the removed and kept multisets match), and kept values are unchanged."""
    for r in range(scores.shape[0]):
        a, b = np.sort(scores[r][ours[r] == -np.inf]), np.sort(scores[r][ref[r] == -np.inf])
        if not np.array_equal(a, b):
            return f"row {r}: removed values differ even up to tie order ({a.size} vs {b.size} removed)"
        if not np.array_equal(ours[r][ours[r] != -np.inf], scores[r][ours[r] != -np.inf]):
            return f"row {r}: kept values changed"
    return None


# On the CPU, runs of processors execute as one fused row-kernel primitive; MLXGP_DISABLE_KERNELS=1
# forces the device-op path (the one GPUs run), so both are held to the reference.
@pytest.mark.parametrize("path", ["row-kernels", "device-ops"])
def test_processors_parity(path, run_mlxgp, tmp_path, monkeypatch):
    import torch

    if path == "device-ops":
        monkeypatch.setenv("MLXGP_DISABLE_KERNELS", "1")
    from safetensors.numpy import load_file, save_file

    cases = _cases()
    save_file({f"scores_{i}": c[3] for i, c in enumerate(cases)}, str(tmp_path / "in.safetensors"))
    (tmp_path / "gen.json").write_text(json.dumps([c[1] for c in cases]))
    (tmp_path / "ids.json").write_text(json.dumps([c[4].tolist() for c in cases]))
    run_mlxgp("process-logits", "--config", tmp_path / "gen.json", "--scores", tmp_path / "in.safetensors",
              "--input-ids-file", tmp_path / "ids.json", "--prompt-len", ",".join(str(c[5]) for c in cases),
              "--out", tmp_path / "out.safetensors")
    ours = load_file(str(tmp_path / "out.safetensors"))
    failures = []
    for i, (name, _, hf, scores, ids, _, tie_order_free) in enumerate(cases):
        ref = torch.from_numpy(scores.copy())
        for proc in hf():
            ref = proc(torch.from_numpy(ids), ref)
        why = _same(ours[f"scores_{i}"], ref.numpy())
        if why and tie_order_free:
            why = _same_up_to_ties(scores, ours[f"scores_{i}"], ref.numpy())
        if why:
            failures.append(f"{name}: {why}")
    print(f"processor parity: {len(cases) - len(failures)}/{len(cases)} cases identical")
    assert not failures, "\n".join(failures)


# prefix_allowed_tokens_fn as a table: (batch_id, last token) -> allowed ids, else DEFAULT.
PREFIX_TABLE = {"default": [0, 2, 4, 6, 8], "rules": [[0, 3, [1]], [0, 5, [5, 7, 9]], [1, 3, [10, 11]], [1, 6, [2]]]}


def _prefix_fn(batch_id, ids):
    for b, last, allowed in PREFIX_TABLE["rules"]:
        if b == batch_id and int(ids[-1]) == last:
            return allowed
    return PREFIX_TABLE["default"]


def test_prefix_allowed_tokens_parity(run_mlxgp, tmp_path):
    """mlxgp's prefix_allowed_tokens_fn processor vs transformers PrefixConstrainedLogitsProcessor,
    including several rows per batch entry (num_return_sequences) and an unsatisfiable entry."""
    import torch
    import transformers.generation.logits_process as lp
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(99)
    cases = []  # (name, config, rows per batch entry, scores, ids)
    cases.append(("one row per entry", {}, 1, _rng_scores(rng, 2, 12), [[4, 3], [7, 3]]))
    cases.append(("default rule, ties", {}, 1, np.round(_rng_scores(rng, 3, 12)), [[1, 1], [2, 2], [6, 0]]))
    s = _rng_scores(rng, 4, 12)
    s[1, 10], s[2, :] = -np.inf, -np.inf  # entry 1 has its rows' allowed tokens all -inf: mask only
    s[3, 10], s[3, 11] = -np.inf, -np.inf
    sampling = {"do_sample": True, "num_return_sequences": 2, "top_k": 0}
    cases.append(("two rows per entry, unsatisfiable entry", sampling, 2, s, [[9, 3], [0, 5], [4, 3], [1, 3]]))
    cases.append(("two rows per entry, -inf present", sampling, 2,
                  np.where(rng.random((4, 12)) < 0.3, -np.inf, _rng_scores(rng, 4, 12)).astype(np.float32),
                  [[9, 5], [0, 0], [4, 6], [1, 1]]))
    save_file({f"scores_{i}": c[3] for i, c in enumerate(cases)}, str(tmp_path / "in.safetensors"))
    (tmp_path / "gen.json").write_text(json.dumps([c[1] for c in cases]))
    (tmp_path / "ids.json").write_text(json.dumps([c[4] for c in cases]))
    (tmp_path / "prefix.json").write_text(json.dumps(PREFIX_TABLE))
    run_mlxgp("process-logits", "--config", tmp_path / "gen.json", "--scores", tmp_path / "in.safetensors",
              "--input-ids-file", tmp_path / "ids.json", "--prefix-allowed", tmp_path / "prefix.json",
              "--out", tmp_path / "out.safetensors")
    ours = load_file(str(tmp_path / "out.safetensors"))
    failures = []
    for i, (name, _, group, scores, ids) in enumerate(cases):
        ref = lp.PrefixConstrainedLogitsProcessor(_prefix_fn, group)(torch.tensor(ids), torch.from_numpy(scores.copy()))
        why = _same(ours[f"scores_{i}"], ref.numpy())
        if why:
            failures.append(f"{name}: {why}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("config,message", [
    ('{"repetition_penalty": 0}', "field 'repetition_penalty' must be > 0"),
    ('{"min_p": 1.5}', "field 'min_p' must be in [0, 1]"),
    ('{"typical_p": 0}', "field 'typical_p' must be in (0, 1]"),
    ('{"no_repeat_ngram_size": -1}', "field 'no_repeat_ngram_size' must be >= 0"),
    ('{"suppress_tokens": [-3]}', "field 'suppress_tokens' must be >= 0"),
    ('{"forced_bos_token_id": 99}', "forced_bos_token_id 99 is outside the vocabulary"),
    ('{"bad_words_ids": [[1], []]}', "field 'bad_words_ids' must not contain an empty list"),
    ('{"bad_words_ids": [[1, 12]]}', "bad_words_ids token id 12 is outside the vocabulary"),
    ('{"bad_words_ids": [3]}', "field 'bad_words_ids' expects a list of lists of token ids"),
    ('{"exponential_decay_length_penalty": [1.5, 2]}', "field 'exponential_decay_length_penalty' must be"),
    ('{"sequence_bias": [[[1], 2.0], [[]]]}', "field 'sequence_bias' expects a list of [[token ids], bias] pairs"),
    ('{"sequence_bias": [[[], 2.0]]}', "field 'sequence_bias' must not contain an empty token list"),
    ('{"epsilon_bias": 1}', "unknown field 'epsilon_bias'"),
    ('{"penalty_alpha": 0.6}', "field 'penalty_alpha' is not implemented yet"),
    ('{"presence_penalty": 2.5}', "field 'presence_penalty' must be in [-2, 2]"),
    ('{"frequency_penalty": "x"}', "field 'frequency_penalty'"),
    ('{"logit_bias": {"12": 1.0}}', "logit_bias token id 12 is outside the vocabulary (size 10)"),
    ('{"logit_bias": [[1, 2, 3]]}', "field 'logit_bias'"),
    ('{"force_words_ids": [[1, 10]]}', "force_words_ids token id 10 is outside the vocabulary (size 10)"),
    ('{"force_words_ids": [[]]}', "field 'force_words_ids' must not contain an empty"),
])
def test_process_logits_rejects_bad_config(run_mlxgp, tmp_path, config, message):
    from safetensors.numpy import save_file

    save_file({"scores": np.zeros((1, 10), np.float32)}, str(tmp_path / "in.safetensors"))
    (tmp_path / "gen.json").write_text(config)
    (tmp_path / "ids.json").write_text("[[1]]")
    proc = run_mlxgp("process-logits", "--config", tmp_path / "gen.json", "--scores", tmp_path / "in.safetensors",
                     "--input-ids-file", tmp_path / "ids.json", "--out", tmp_path / "out.safetensors", check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("flags,message", [
    (["--repetition-penalty", "0"], "field 'repetition_penalty' must be > 0, got 0"),
    (["--no-repeat-ngram-size", "two"], "field 'no_repeat_ngram_size' expects an integer, got 'two'"),
    (["--min-new-tokens", "-1"], "field 'min_new_tokens' must be >= 0, got -1"),
    (["--min-p", "2"], "field 'min_p' must be in [0, 1], got 2"),
    (["--eta-cutoff", "1"], "field 'eta_cutoff' must be in [0, 1), got 1"),
    (["--bad-words-ids", "1,x;3"], "field 'bad_words_ids' expects an integer, got 'x'"),
    (["--sequence-bias", "1,2"], "field 'sequence_bias' expects ids:bias pairs"),
    (["--exponential-decay-length-penalty", "3"], "field 'exponential_decay_length_penalty' must be [start_index"),
])
def test_generate_rejects_bad_processor_flags(run_mlxgp, flags, message):
    proc = run_mlxgp("generate", "--prompt", "Hi", *flags, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1


def test_generate_accepts_processor_flags(run_mlxgp, default_gguf):
    """The flag spellings of the list fields parse and run (values checked by the e2e parity test)."""
    proc = run_mlxgp("generate", "--model", default_gguf, "--input-ids", "504,2365,6354,16438", "--max-new-tokens", 4,
                     "--bad-words-ids", "351;253,2365", "--sequence-bias", "28:-1.5;351,253:2", "--min-new-tokens", 2,
                     "--repetition-penalty", "1.1", "--no-repeat-ngram-size", 3, "--show-config", "--json")
    out = json.loads(proc.stdout)
    assert len(out["sequences"][0]["token_ids"]) == 4
    assert 351 not in out["sequences"][0]["token_ids"]
    assert 'bad_words_ids = [[351],[253,2365]]' in proc.stderr
    assert 'sequence_bias = [[[28],-1.5],[[351,253],2.0]]' in proc.stderr


@pytest.mark.parametrize("table", [
    {"default": [1], "rules": [[0, 1e30, [2]]]},  # a float where a token id goes (its int cast was undefined)
    {"default": [1], "rules": [[0, 2**32 + 3, [2]]]},  # beyond int: it wrapped to token 3
    {"default": [1.5]},
    {"default": [1], "rules": [[0, 3, 2]]},
    {"default": [-1]},  # Python would index the last token
    {"default": [2**64 - 1]},  # read as a 64-bit signed integer: -1
])
def test_prefix_allowed_table_refuses_entries_that_are_not_ints(table, run_mlxgp, tmp_path):
    from safetensors.numpy import save_file
    save_file({"scores": np.zeros((1, 12), np.float32)}, str(tmp_path / "in.safetensors"))
    (tmp_path / "gen.json").write_text("{}")
    (tmp_path / "ids.json").write_text("[[4, 3]]")
    (tmp_path / "prefix.json").write_text(json.dumps(table))
    p = run_mlxgp("process-logits", "--config", tmp_path / "gen.json", "--scores", tmp_path / "in.safetensors",
                  "--input-ids-file", tmp_path / "ids.json", "--prefix-allowed", tmp_path / "prefix.json",
                  "--out", tmp_path / "out.safetensors", check=False)
    assert p.returncode != 0 and p.stderr.strip().startswith("[cli] --prefix-allowed must be"), p.stderr
    assert not (tmp_path / "out.safetensors").exists()
