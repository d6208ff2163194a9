"""llama.cpp's samplers (DRY, top-n-sigma, XTC, mirostat v1/v2) against llama.cpp itself: its libllama
(commit 5b4ebc5, node-llama-cpp 3.21.1, loaded by tests/refs/llama_cpp.py) runs llama_sampler_apply on
the same logits mlxgp processes.

- DRY and top-n-sigma: `mlxgp process-logits` (row kernels and device ops) and llama.cpp on real
  logits of the default model (several histories with repeats and sequence breakers): identical -inf
  patterns, values within 1e-5.
- XTC: the cut itself compared deterministically (probability 1: llama.cpp, mlx-lm's apply_xtc and
  mlxgp give identical masks), then sampled frequencies (chi-square) at probability 0.5 and 1 against
  the distribution llama.cpp's rule gives, and mlx-lm's make_sampler against the same distribution.
- Mirostat: the first token's frequencies against the truncated distribution llama.cpp's sampler
  builds; then a whole sequence step by step: at each step the candidates mlxgp sampled from (its
  recorded scores) equal llama.cpp's for the mu that the rule of llama-sampling.cpp
  (mu -= eta * (-log2 p(token) - tau), p renormalised over the candidates) gives from the tokens
  mlxgp chose.
- The CLI: flags work, batched rows equal their solo runs, bad values and unsupported modes give one-line
  errors."""
import ctypes
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import tiny_models  # noqa: E402
from test_sampling_stats import _chi_square  # noqa: E402
from tests.refs import llama_cpp  # noqa: E402

P_MIN = 1e-3
N = 20000
PROMPT = [1, 37, 301, 5, 88, 140]
TEXT = ("The cat sat on the mat. The cat sat on the mat. The cat sat on the\nThe dog: the cat sat on the mat, "
        "\"the cat sat\" * the cat sat on the mat. The cat sat on")


class Llama:
    """libllama through ctypes: the default GGUF's vocabulary (vocab_only) and the samplers."""

    def __init__(self, gguf):
        lib = self.lib = llama_cpp.load()
        c = ctypes

        class ModelParams(c.Structure):
            # llama_model_params at 5b4ebc5 is 80 bytes: two pointers, four int32 (n_gpu_layers,
            # split_mode, ...), main_gpu, four pointers (tensor_split .. kv_overrides at 0x40), then its
            # bools from 0x48, vocab_only first (llama_model_default_params' stores, read with objdump).
            _fields_ = [("raw", c.c_uint8 * 80)]

        lib.llama_model_default_params.restype = ModelParams
        lib.llama_model_load_from_file.argtypes = [c.c_char_p, ModelParams]
        lib.llama_model_load_from_file.restype = c.c_void_p
        lib.llama_model_get_vocab.argtypes = [c.c_void_p]
        lib.llama_model_get_vocab.restype = c.c_void_p
        lib.llama_vocab_n_tokens.argtypes = [c.c_void_p]
        lib.llama_vocab_n_tokens.restype = c.c_int32
        lib.llama_tokenize.argtypes = [c.c_void_p, c.c_char_p, c.c_int32, c.POINTER(c.c_int32), c.c_int32, c.c_bool,
                                       c.c_bool]
        lib.llama_tokenize.restype = c.c_int32
        # At 5b4ebc5 DRY takes no n_ctx_train (its prologue reads vocab, two floats, two int32, the
        # breakers and their count): (vocab, multiplier, base, allowed_length, penalty_last_n, ...).
        lib.llama_sampler_init_dry.argtypes = [c.c_void_p, c.c_float, c.c_float, c.c_int32, c.c_int32,
                                               c.POINTER(c.c_char_p), c.c_size_t]
        lib.llama_sampler_init_top_n_sigma.argtypes = [c.c_float]
        lib.llama_sampler_init_top_k.argtypes = [c.c_int32]
        lib.llama_sampler_init_xtc.argtypes = [c.c_float, c.c_float, c.c_size_t, c.c_uint32]
        lib.llama_sampler_init_mirostat.argtypes = [c.c_int32, c.c_uint32, c.c_float, c.c_float, c.c_int32]
        lib.llama_sampler_init_mirostat_v2.argtypes = [c.c_uint32, c.c_float, c.c_float]
        for f in ("dry", "top_n_sigma", "top_k", "xtc", "mirostat", "mirostat_v2"):
            getattr(lib, f"llama_sampler_init_{f}").restype = c.c_void_p
        lib.llama_sampler_accept.argtypes = [c.c_void_p, c.c_int32]
        lib.llama_sampler_apply.argtypes = [c.c_void_p, c.POINTER(llama_cpp.TokenDataArray)]
        lib.llama_sampler_free.argtypes = [c.c_void_p]
        params = lib.llama_model_default_params()
        params.raw[0x48] = 1  # vocab_only
        self.model = lib.llama_model_load_from_file(str(gguf).encode(), params)
        assert self.model, "llama.cpp could not load the GGUF"
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)

    def tokenize(self, text):
        out = (ctypes.c_int32 * 4096)()
        b = text.encode()
        n = self.lib.llama_tokenize(self.vocab, b, len(b), out, 4096, False, False)
        assert n > 0
        return list(out[:n])

    def dry(self, multiplier, base, allowed, last_n, breakers):
        # last_n -1 is llama.cpp's context size, which a vocab-only load has none of (0: DRY off); any
        # last_n beyond the history means the same: the whole history.
        last_n = 1 << 16 if last_n == -1 else last_n
        arr = (ctypes.c_char_p * max(1, len(breakers)))(*[s.encode() for s in breakers])
        return self.lib.llama_sampler_init_dry(self.vocab, multiplier, base, allowed, last_n, arr, len(breakers))

    def apply(self, sampler, logits, history=()):
        """(logits after the sampler (or a list of samplers, in turn), -inf where it dropped a
        candidate; its p per token; the token it selected or -1). Frees the samplers."""
        lib = self.lib
        samplers = sampler if isinstance(sampler, list) else [sampler]
        for s in samplers:
            for t in history:
                lib.llama_sampler_accept(s, int(t))
        n = len(logits)
        data = (llama_cpp.TokenData * n)()
        view = np.frombuffer(data, dtype=np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")]))
        view["id"] = np.arange(n)
        view["logit"] = logits
        cur = llama_cpp.TokenDataArray(data, n, -1, False)
        for s in samplers:
            lib.llama_sampler_apply(s, ctypes.byref(cur))
        start = (ctypes.cast(cur.data, ctypes.c_void_p).value - ctypes.addressof(data)) // ctypes.sizeof(llama_cpp.TokenData)
        kept = view[start:start + cur.size]
        out = np.full(n, -np.inf, np.float32)
        out[kept["id"]] = kept["logit"]
        p = np.zeros(n, np.float64)
        p[kept["id"]] = kept["p"]
        selected = int(kept["id"][cur.selected]) if cur.selected >= 0 else -1
        for s in samplers:
            lib.llama_sampler_free(s)
        return out, p, selected


@pytest.fixture(params=["row kernels", "device ops"])
def ops_path(request, monkeypatch):
    """mlxgp's CPU row kernels, or its device-op apply() (MLXGP_DISABLE_KERNELS), the GPU path."""
    if request.param == "device ops":
        monkeypatch.setenv("MLXGP_DISABLE_KERNELS", "1")
    else:
        monkeypatch.delenv("MLXGP_DISABLE_KERNELS", raising=False)
    return request.param


@pytest.fixture(scope="module")
def llama(default_gguf):
    return Llama(default_gguf)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_models.make_tiny_model("llama", tmp_path_factory.mktemp("llama_samplers_tiny"))


@pytest.fixture(scope="module")
def real_logits(llama, run_mlxgp, default_gguf, tmp_path_factory):
    """(token ids of TEXT, the default model's logits after each prefix [T, V])."""
    ids = llama.tokenize(TEXT)
    out = tmp_path_factory.mktemp("llama_logits") / "logits.safetensors"
    run_mlxgp("logits", "--model", default_gguf, "--input-ids", ",".join(map(str, ids)), "--out", out)
    logits = load_file(str(out))["logits"].astype(np.float32)
    assert logits.shape == (len(ids), llama.n_vocab)
    return ids, logits


def _process(run_mlxgp, tmp_path, model, cases):
    """Runs `mlxgp process-logits` once over cases [(config, ids row, logits row)]; returns the outputs."""
    save_file({f"scores_{i}": c[2][None].astype(np.float32) for i, c in enumerate(cases)}, str(tmp_path / "in.safetensors"))
    (tmp_path / "gen.json").write_text(json.dumps([c[0] for c in cases]))
    (tmp_path / "ids.json").write_text(json.dumps([[list(map(int, c[1]))] for c in cases]))
    run_mlxgp("process-logits", "--model", model, "--config", tmp_path / "gen.json", "--scores",
              tmp_path / "in.safetensors", "--input-ids-file", tmp_path / "ids.json", "--out", tmp_path / "out.safetensors")
    out = load_file(str(tmp_path / "out.safetensors"))
    return [out[f"scores_{i}"][0] for i in range(len(cases))]


def _compare(ours, ref):
    """(identical -inf pattern, max |diff| relative to max(1, |ref|) over the finite entries)."""
    same_mask = bool(np.array_equal(np.isneginf(ours), np.isneginf(ref)))
    finite = np.isfinite(ref) & np.isfinite(ours)
    diff = np.abs(ours[finite].astype(np.float64) - ref[finite]) / np.maximum(1.0, np.abs(ref[finite]))
    return same_mask, float(diff.max(initial=0.0))


DRY_CONFIGS = [
    ("llama.cpp defaults, multiplier 0.8", dict(dry_multiplier=0.8)),
    ("breakers with multi-token tails", dict(dry_multiplier=1.0, dry_base=1.2, dry_allowed_length=1,
                                             dry_penalty_last_n=40, dry_sequence_breakers=["cat", " mat", "on the"])),
    ("no breakers, allowed 3", dict(dry_multiplier=2.0, dry_base=1.5, dry_allowed_length=3, dry_sequence_breakers=[])),
    ("last 12 tokens, breakers", dict(dry_multiplier=0.5, dry_base=3.0, dry_penalty_last_n=12,
                                      dry_sequence_breakers=["\n", "sat on"])),
]


def _dry_ends(n):  # histories ids[:end + 1]: with repeats, breakers, and both
    return [12, 20, 27, 33, 40, n - 3, n - 1]


@pytest.fixture(scope="module")
def dry_cases(llama, real_logits):
    """[(config, history, logits row)], llama.cpp's DRY output for each, and how many logits the
    sequence breakers spared (llama.cpp with and without them)."""
    ids, logits = real_logits
    cases, refs, broken = [], [], 0
    for _, cfg in DRY_CONFIGS:
        full = {"dry_base": 1.75, "dry_allowed_length": 2, "dry_penalty_last_n": -1,
                "dry_sequence_breakers": ["\n", ":", "\"", "*"], **cfg}
        for e in _dry_ends(len(ids)):
            hist = ids[:e + 1]
            sampler = llama.dry(full["dry_multiplier"], full["dry_base"], full["dry_allowed_length"],
                                full["dry_penalty_last_n"], full["dry_sequence_breakers"])
            refs.append(llama.apply(sampler, logits[e], hist)[0])
            cases.append((cfg, hist, logits[e]))
            if full["dry_sequence_breakers"]:  # the breakers change something
                unbroken = llama.dry(full["dry_multiplier"], full["dry_base"], full["dry_allowed_length"],
                                     full["dry_penalty_last_n"], [])
                broken += int((llama.apply(unbroken, logits[e], hist)[0] != refs[-1]).sum())
    return cases, refs, broken


def test_dry_equals_llama_cpp(dry_cases, real_logits, run_mlxgp, default_gguf, tmp_path, ops_path):
    ids, logits = real_logits
    ends = _dry_ends(len(ids))
    cases, refs, broken = dry_cases
    ours = _process(run_mlxgp, tmp_path, default_gguf, cases)
    worst, penalised, failures = 0.0, 0, []
    for i, (o, r) in enumerate(zip(ours, refs)):
        same, diff = _compare(o, r)
        worst = max(worst, diff)
        penalised += int((r != logits[ends[i % len(ends)]]).sum())
        if not same or diff > 1e-5:
            failures.append(f"{DRY_CONFIGS[i // len(ends)][0]}, history {ends[i % len(ends)] + 1}: mask {same}, diff {diff:.3g}")
    print(f"DRY ({ops_path}): {len(cases) - len(failures)}/{len(cases)} cases identical, max rel |diff| {worst:.3g}, "
          f"{penalised} penalised logits, {broken} logits that the sequence breakers spared")
    assert not failures, "\n".join(failures)
    assert penalised >= 10 and broken >= 3  # the histories repeat (DRY bites) and hold breakers


def test_top_n_sigma_equals_llama_cpp(llama, real_logits, run_mlxgp, default_gguf, tmp_path, ops_path):
    ids, logits = real_logits
    rows = [3, 9, 17, 30, len(ids) - 1]
    cases, refs = [], []
    for n in (0.5, 1.0, 2.0, 3.5):
        for r in rows:
            refs.append(llama.apply(llama.lib.llama_sampler_init_top_n_sigma(n), logits[r])[0])
            cases.append(({"do_sample": True, "top_k": 0, "top_n_sigma": n}, ids[:r + 1], logits[r]))
    ours = _process(run_mlxgp, tmp_path, default_gguf, cases)
    identical = sum(_compare(o, r) == (True, 0.0) for o, r in zip(ours, refs))
    kept = [int(np.isfinite(r).sum()) for r in refs]
    print(f"top-n-sigma ({ops_path}): {identical}/{len(cases)} masks identical; candidates kept {min(kept)}..{max(kept)}")
    assert identical == len(cases)
    assert min(kept) < llama.n_vocab and max(kept) > 1


def _xtc_threshold(probs, above=4):
    """A threshold with exactly `above` tokens at or over it (midway to the next probability)."""
    p = np.sort(probs)[::-1]
    t = float((p[above - 1] + p[above]) / 2)
    assert 0 < t <= 0.5, t
    return t


def _softmax(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def test_xtc_cut_equals_llama_cpp_and_mlx_lm(llama, real_logits, run_mlxgp, default_gguf, tmp_path, ops_path):
    import mlx.core as mx
    from mlx_lm.sample_utils import apply_xtc

    ids, logits = real_logits
    cases, refs, cut = [], [], 0
    for thr in (0.02, 0.05, 0.1, 0.2):
        for r in (3, 9, 17, 30, len(ids) - 1):
            ref = llama.apply(llama.lib.llama_sampler_init_xtc(1.0, thr, 0, 1), logits[r])[0]
            mlx_lm_cut = np.array(apply_xtc(mx.array(logits[r][None]), 1.0, thr, []))[0]
            assert np.array_equal(np.isneginf(ref), np.isneginf(mlx_lm_cut)), f"mlx-lm's XTC differs at {thr}, row {r}"
            refs.append(ref)
            cut += int(np.isneginf(ref).sum())
            cases.append(({"do_sample": True, "top_k": 0, "xtc_probability": 1.0, "xtc_threshold": thr}, ids[:r + 1],
                          logits[r]))
    for thr in (0.0, 0.05):  # after top_k, as in llama.cpp's chain: the tokens it cut are no candidates
        for r in (9, len(ids) - 1):
            lib = llama.lib
            refs.append(llama.apply([lib.llama_sampler_init_top_k(10), lib.llama_sampler_init_xtc(1.0, thr, 0, 1)],
                                    logits[r])[0])
            cut += int(np.isneginf(refs[-1]).sum()) - (llama.n_vocab - 10)
            cases.append(({"do_sample": True, "top_k": 10, "xtc_probability": 1.0, "xtc_threshold": thr}, ids[:r + 1],
                          logits[r]))
    ours = _process(run_mlxgp, tmp_path, default_gguf, cases)
    identical = sum(_compare(o, r) == (True, 0.0) for o, r in zip(ours, refs))
    print(f"XTC at probability 1 ({ops_path}): {identical}/{len(cases)} cuts identical to llama.cpp (those "
          f"without top_k also to mlx-lm's), {cut} tokens cut")
    assert identical == len(cases) and cut > 0


def _first_tokens(run_mlxgp_json, folder, tmp_path, cfg, n=N, seed=2024):
    path = tmp_path / "gen.json"
    path.write_text(json.dumps({**cfg, "do_sample": True, "top_k": 0, "max_new_tokens": 1, "num_return_sequences": n,
                                "seed": seed}))
    out = run_mlxgp_json("generate", "--model", folder, "--dtype", "float32", "--input-ids", ",".join(map(str, PROMPT)),
                         "--config", path)
    return Counter(s["token_ids"][0] for s in out["sequences"])


def _first_logits(run_mlxgp, folder, tmp_path):
    out = tmp_path / "first.safetensors"
    run_mlxgp("generate", "--model", folder, "--dtype", "float32", "--input-ids", ",".join(map(str, PROMPT)),
              "--max-new-tokens", 1, "--output-logits", "--scores-out", out)
    return load_file(str(out))["logits.0"][0].astype(np.float32)


def _fit(name, counts, probs, wrong, wrong_name="the distribution without it"):
    stat, dof, p, outside = _chi_square(counts, probs)
    p_wrong = _chi_square(counts, wrong)[2]
    print(f"{name}: support {int((probs > 0).sum())}, chi2 {stat:.1f} dof {dof} p {p:.3g}; against "
          f"{wrong_name} p {p_wrong:.2g}")
    assert not outside, f"{name}: sampled outside the support: {outside}"
    assert p > P_MIN, name
    assert p_wrong < 1e-6, f"{name}: the test has no power"


def test_xtc_sampled_frequencies(llama, tiny, run_mlxgp, run_mlxgp_json, tmp_path):
    import mlx.core as mx
    from mlx_lm.sample_utils import make_sampler

    _, folder = tiny
    logits = _first_logits(run_mlxgp, folder, tmp_path)
    raw = _softmax(logits)
    thr = _xtc_threshold(raw)
    cut_logits = llama.apply(llama.lib.llama_sampler_init_xtc(1.0, thr, 0, 1), logits)[0]
    cut = _softmax(cut_logits)
    assert int(np.isneginf(cut_logits).sum()) == 3
    _fit("XTC p=1 (llama.cpp's cut)", _first_tokens(run_mlxgp_json, folder, tmp_path,
                                                     {"xtc_probability": 1.0, "xtc_threshold": thr}), cut, raw)
    mixture = 0.5 * raw + 0.5 * cut
    _fit("XTC p=0.5 (llama.cpp's rule: cut with probability 0.5)",
         _first_tokens(run_mlxgp_json, folder, tmp_path, {"xtc_probability": 0.5, "xtc_threshold": thr}), mixture, cut,
         "the cut at every step")
    # mlx-lm's sampler (one coin per call: probability 1 makes the batch one distribution).
    mx.random.seed(0)
    sampler = make_sampler(temp=1.0, xtc_probability=1.0, xtc_threshold=thr, xtc_special_tokens=[])
    drawn = np.array(sampler(mx.array(np.repeat(logits[None], N, 0))))
    _fit("mlx-lm make_sampler XTC p=1", Counter(drawn.tolist()), cut, raw)


def _mirostat_ref(llama, version, logits, tau, eta=0.1, seed=1):
    """llama.cpp's candidates and their renormalised probabilities for one step from mu = 2 * tau."""
    lib = llama.lib
    s = (lib.llama_sampler_init_mirostat(len(logits), seed, tau, eta, 100) if version == 1
         else lib.llama_sampler_init_mirostat_v2(seed, tau, eta))
    out, p, selected = llama.apply(s, logits)
    assert selected >= 0 and np.isfinite(out[selected])
    return out, p


@pytest.mark.parametrize("version", [1, 2])
def test_mirostat_first_token_frequencies(llama, tiny, run_mlxgp, run_mlxgp_json, tmp_path, version):
    _, folder = tiny
    logits = _first_logits(run_mlxgp, folder, tmp_path)
    for tau in (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5):  # the first with a spread-out truncation
        out, p = _mirostat_ref(llama, version, logits, tau)
        if 5 <= int(np.isfinite(out).sum()) <= 200:
            break
    else:
        raise AssertionError("no tau gives a truncation with a spread")
    probs = _softmax(out)
    assert np.allclose(probs, p, atol=1e-6)  # llama.cpp's own renormalised p
    counts = _first_tokens(run_mlxgp_json, folder, tmp_path, {"mirostat": version, "mirostat_tau": tau})
    _fit(f"mirostat v{version} tau {tau}", counts, probs, _softmax(logits))


@pytest.mark.parametrize("version,tau", [(1, 3.0), (2, 4.0)])
def test_mirostat_trajectory_follows_llama_cpp(llama, run_mlxgp, default_gguf, tmp_path, version, tau):
    eta, steps = 0.1, 24
    out = tmp_path / "seq.safetensors"
    run_mlxgp("generate", "--model", default_gguf, "--prompt", "Once upon a time", "--do-sample", "--top-k", 0,
              "--mirostat", version, "--mirostat-tau", tau, "--mirostat-eta", eta, "--max-new-tokens", steps,
              "--seed", 3, "--output-scores", "--output-logits", "--scores-out", out)
    saved = load_file(str(out))
    tokens, scores, logits = saved["token_ids.0"], saved["scores.0"], saved["logits.0"]
    mu = np.float32(2 * tau)
    sizes = []
    for k, t in enumerate(tokens):
        # A fresh llama.cpp sampler starts from mu = 2 * tau': tau' = mu / 2 gives it this step's mu.
        ref, p = _mirostat_ref(llama, version, logits[k].astype(np.float32), float(mu / 2), eta)
        assert np.array_equal(np.isfinite(scores[k]), np.isfinite(ref)), f"step {k}: candidates differ"
        assert p[t] > 0, f"step {k}: token {t} is not a candidate"
        sizes.append(int(np.isfinite(ref).sum()))
        mu = np.float32(mu - np.float32(eta) * (np.float32(-np.log2(np.float32(p[t]))) - np.float32(tau)))
    print(f"mirostat v{version}: {len(tokens)} steps identical to llama.cpp, candidates {min(sizes)}..{max(sizes)}, "
          f"final mu {mu:.3f}")
    assert len(tokens) == steps and max(sizes) > 1


# ---------------------------------------------------------------------------------------------- CLI

def test_cli_flags_and_batched_rows(run_mlxgp, run_mlxgp_json, tiny, tmp_path):
    _, folder = tiny
    ids = ",".join(map(str, PROMPT * 3))

    def gen(*flags):
        return run_mlxgp_json("generate", "--model", folder, "--dtype", "float32", "--input-ids", ids,
                              "--max-new-tokens", 24, *flags)["sequences"][0]["token_ids"]

    greedy = gen()
    dry_flags = ("--dry-multiplier", 3.0, "--dry-allowed-length", 1, "--dry-sequence-breakers", "[]")
    dry = gen(*dry_flags)
    assert dry != greedy  # honoured in greedy decoding
    assert gen(*dry_flags, "--use-speculative", "--draft-layers", 1) == dry  # speculative: exact, DRY from the ids
    assert gen(*dry_flags, "--num-beams", 3) != gen("--num-beams", 3)  # every beam from its own ids
    # The tiny checkpoint has no tokenizer to match breakers against: refused, not ignored.
    proc = run_mlxgp("generate", "--model", folder, "--input-ids", ids, "--dry-multiplier", 1, check=False)
    assert proc.returncode == 2 and proc.stderr == "[config] dry_sequence_breakers need the tokenizer (their token " \
                                                   "sequences come from it)\n", proc.stderr
    assert gen("--do-sample", "--seed", 4, "--top-n-sigma", 0.001) == greedy  # only the best token survives
    configs = [
        {"do_sample": True, "seed": 5, "top_k": 0, "mirostat": 2, "mirostat_tau": 3.0},
        {"do_sample": True, "seed": 6, "top_k": 0, "mirostat": 1, "temperature": 0.8},
        {"do_sample": True, "seed": 7, "xtc_probability": 0.5, "xtc_threshold": 0.003, "top_n_sigma": 2.0,
         "dry_multiplier": 0.8, "dry_sequence_breakers": []},
    ]
    requests = [{"input_ids": p, "config": {**c, "max_new_tokens": 12}} for c in configs for p in (PROMPT, PROMPT[:3])]
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in requests))
    proc = run_mlxgp("generate", "--model", folder, "--dtype", "float32", "--prompts-file", path, "--json")
    batch = [json.loads(line)["sequences"][0]["token_ids"] for line in proc.stdout.splitlines() if line.strip()]
    for r, got in zip(requests, batch):
        cfg = tmp_path / "solo.json"
        cfg.write_text(json.dumps(r["config"]))
        solo = run_mlxgp_json("generate", "--model", folder, "--dtype", "float32", "--input-ids",
                               ",".join(map(str, r["input_ids"])), "--config", cfg)["sequences"][0]["token_ids"]
        assert got == solo, r  # a request samples the same tokens in a batch as alone (same seed)


@pytest.mark.parametrize("flags,message", [
    (["--do-sample", "--mirostat", 2], "field 'mirostat' replaces the truncation samplers (llama.cpp's chain is "
                                       "temperature then mirostat) and cannot be combined with top_k=50 (set top_k=0)"),
    (["--do-sample", "--top-k", 0, "--mirostat", 1, "--top-p", 0.9], "cannot be combined with top_p < 1"),
    (["--mirostat", 2, "--top-k", 0], "field 'mirostat' needs do_sample=true"),
    (["--do-sample", "--top-k", 0, "--mirostat", 2, "--num-beams", 2], "field 'mirostat' cannot be combined with num_beams > 1"),
    (["--do-sample", "--top-k", 0, "--mirostat", 2, "--prompt-lookup-num-tokens", 3],
     "field 'mirostat' cannot be combined with speculative or prompt-lookup decoding"),
    (["--do-sample", "--xtc-probability", 0.5, "--num-beams", 2], "field 'xtc_probability' cannot be combined with num_beams > 1"),
    (["--do-sample", "--xtc-probability", 0.5, "--use-speculative", "--draft-layers", 1],
     "field 'xtc_probability' cannot be combined with speculative"),
    (["--xtc-probability", 0.5], "field 'xtc_probability' needs do_sample=true"),
    (["--top-n-sigma", 1.0], "field 'top_n_sigma' needs do_sample=true"),
    (["--do-sample", "--top-n-sigma", 1.0, "--num-beams", 2], "field 'top_n_sigma' cannot be combined with num_beams > 1"),
    (["--do-sample", "--top-n-sigma", "nan"], "field 'top_n_sigma' must be a finite number"),
    (["--xtc-threshold", 0.7], "field 'xtc_threshold' must be in [0, 0.5], got 0.7"),
    (["--mirostat", 3], "field 'mirostat' must be in [0, 2], got 3"),
    (["--dry-base", 0.9], "field 'dry_base' must be >= 1, got 0.9"),
    (["--dry-penalty-last-n", -2], "field 'dry_penalty_last_n' must be >= -1, got -2"),
    (["--dry-sequence-breakers", '["a", ""]'], "field 'dry_sequence_breakers' must not contain an empty string"),
    (["--dry-multiplier", "lots"], "field 'dry_multiplier' expects a number, got 'lots'"),
])
def test_cli_refusals(run_mlxgp, default_gguf, flags, message):
    proc = run_mlxgp("generate", "--model", default_gguf, "--prompt", "Hi", "--max-new-tokens", 2, *flags, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
