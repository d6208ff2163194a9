"""Logits-processor overhead: decode tokens/s of sampling with every processor and warper enabled
against plain sampling, for mlxgp and for transformers, same run, same prompt ids."""
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from common import DEFAULT_GGUF, HF_F32_DIR, ROOT
from prompt import prompt_ids
from runner import RunError, run_json

from . import Context, Table, section

WORKER = ROOT / "bench" / "workers" / "transformers_sampling_worker.py"
RUN_TIMEOUT_S = 600
TEMPERATURE = 0.8
MAX_NEW_TOKENS = 64  # at most: keeps the section near 2 minutes (transformers runs twice per repeat)
SEED = 0


def _settings(ids: list[int], n: int) -> dict:
    """Every processor and warper both engines implement, with settings that change the logits. Token ids
    are taken from the prompt so the id-dependent processors have something to act on. min_new_tokens = n
    blocks EOS for the whole run, so every run produces exactly n tokens while EOS stays configured."""
    a, b, c, d, e = ids[3], ids[4], ids[10], ids[11], ids[20]
    return {
        "repetition_penalty": 1.1,
        "no_repeat_ngram_size": 3,
        "sequence_bias": [[[a, b], -2.0], [[c], 1.5]],
        "bad_words_ids": [[c, d], [e]],
        "suppress_tokens": sorted(set(ids[30:40])),
        "min_new_tokens": n,
        "top_k": 50,
        "top_p": 0.9,
        "min_p": 0.05,
        "typical_p": 0.95,
    }


# Not in transformers: OpenAI/vLLM-style penalties and logit_bias, mlxgp only.
MLXGP_ONLY = {"presence_penalty": 0.5, "frequency_penalty": 0.3}


def _flag(name: str, value) -> list[str]:
    """A setting as mlxgp generate's flag syntax."""
    flag = "--" + name.replace("_", "-")
    if name == "sequence_bias":
        return [flag, ";".join(",".join(map(str, seq)) + f":{bias}" for seq, bias in value)]
    if name == "bad_words_ids":
        return [flag, ";".join(",".join(map(str, seq)) for seq in value)]
    if isinstance(value, list):
        return [flag, ",".join(map(str, value))]
    return [flag, str(value)]


def _mlxgp_argv(ctx: Context, model: Path, ids: list[int], n: int, procs: bool) -> list[str]:
    argv = [str(ctx.mlxgp_bin), "generate", "--model", str(model), "--input-ids", ",".join(map(str, ids)),
            "--max-new-tokens", str(n), "--do-sample", "--temperature", str(TEMPERATURE), "--seed", str(SEED),
            "--json"]
    if not procs:  # plain sampling: no warper (HF's default top_k 50 switched off), EOS ignored
        return argv + ["--top-k", "0", "--ignore-eos"]
    for k, v in _settings(ids, n).items():
        argv += _flag(k, v)
    for k, v in MLXGP_ONLY.items():
        argv += _flag(k, v)
    return argv + ["--logit-bias", f"{ids[5]}:-1.0,{ids[6]}:0.5"]


def _hf_argv(ctx: Context, model: Path, ids: list[int], n: int, procs: bool) -> list[str]:
    kwargs = {"do_sample": True, "temperature": TEMPERATURE, "seed": SEED}
    kwargs |= _settings(ids, n) if procs else {"top_k": 0, "top_p": 1.0, "eos_token_id": None, "pad_token_id": 0}
    return [str(ctx.python), str(WORKER), str(model), ",".join(map(str, ids)), str(n), json.dumps(kwargs)]


@dataclass
class Engine:
    name: str
    model: Path
    argv: object
    # variant ("plain" | "all") -> decode tok/s of each run
    decode: dict = field(default_factory=lambda: {"plain": [], "all": []})
    error: str | None = None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.1f}"


@section("processors", "Logits-processor overhead")
def run(ctx: Context) -> list[Table]:
    ids = prompt_ids(HF_F32_DIR / "tokenizer.json")
    n = min(ctx.max_new_tokens, MAX_NEW_TOKENS)
    engines = [Engine("mlxgp", HF_F32_DIR, _mlxgp_argv), Engine("transformers", HF_F32_DIR, _hf_argv),
               Engine("mlxgp", DEFAULT_GGUF, _mlxgp_argv)]
    for e in engines:
        if e.name == "mlxgp":
            e.error = ctx.mlxgp_missing()
    ctx.log("[processors] " + ", ".join(f"{e.name} on {e.model.name}" for e in engines))
    for rep in range(ctx.repeats):
        # The two variants alternate their order run to run, so a drift of the machine hits both alike.
        variants = ["plain", "all"] if rep % 2 == 0 else ["all", "plain"]
        for e in engines:
            for variant in variants:
                if e.error:
                    continue
                try:
                    r = run_json(e.argv(ctx, e.model, ids, n, variant == "all"), RUN_TIMEOUT_S)
                    got = r.stats.get("generated_tokens")
                    if got != n:
                        raise RunError(f"generated {got} tokens, expected {n}")
                except RunError as err:
                    e.error = f"{variant}: {err}"
                    continue
                e.decode[variant].append(r.stats["decode_tokens_per_s"])
                ctx.log(f"  {e.name:12} {e.model.name:34} {variant:5} run {rep + 1}/{ctx.repeats}: "
                        f"decode {_fmt(r.stats['decode_tokens_per_s'])} tok/s")

    table = Table(title=f"Decode tok/s, sampling with all processors vs plain sampling: {len(ids)}-token prompt, "
                        f"{n} new tokens, median of {ctx.repeats} runs",
                  columns=["engine", "model", "plain tok/s", "all processors tok/s", "overhead"])
    for e in engines:
        if e.error:
            table.failures.append(f"{e.name} on {e.model.name}: {e.error}")
            table.rows.append([e.name, e.model.name, f"failed: {e.error}", "", ""])
            continue
        plain, procs = statistics.median(e.decode["plain"]), statistics.median(e.decode["all"])
        table.rows.append([e.name, e.model.name, _fmt(plain), _fmt(procs), f"{(plain / procs - 1) * 100:+.1f}%"])
    settings = _settings(ids, n)
    table.notes = [
        "all processors = " + ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items())
        + f", temperature={TEMPERATURE}; mlxgp also runs "
        + ", ".join(f"{k}={v}" for k, v in MLXGP_ONLY.items())
        + " and a two-token logit_bias (transformers has no equivalent). Token ids come from the prompt. "
          "min_new_tokens equal to the new-token count keeps EOS masked, so every run makes all its tokens.",
        f"plain = temperature {TEMPERATURE} sampling with top_k=0 (transformers' default top_k=50 would add a "
        "warper), EOS ignored. Both variants use the same seed; the sampled tokens differ, the work per token "
        "does not.",
        "overhead = plain tok/s / all-processors tok/s - 1: the extra decode time per token the processors "
        "cost (target for mlxgp: under 5%). Each run is a fresh process; decode tok/s is timed as in the "
        "generation table. transformers runs fp32 on the HF folder; mlxgp runs the same folder and, for "
        "information, the default Q4_1 GGUF, whose faster decode makes the same processor cost a larger share.",
    ]
    return [table]
