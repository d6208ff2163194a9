"""Beam search speed: num_beams=4, 64 new tokens, mlxgp against transformers on the same fp32 weights and
prompt ids, same run. Metric: new tokens of the returned sequence / generation wall time (prefill
included, model loading excluded). min_new_tokens = the token count keeps EOS masked so both engines
run every step; both return the same tokens (checked)."""
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from common import DEFAULT_GGUF, HF_F32_DIR, ROOT
from prompt import prompt_ids
from runner import RunError, run_json

from . import Context, Table, section

WORKER = ROOT / "bench" / "workers" / "transformers_beam_worker.py"
RUN_TIMEOUT_S = 900
NUM_BEAMS = 4
MAX_NEW_TOKENS = 64
TARGET = 2.0  # mlxgp beam tokens/s at least this many times transformers'


def _settings(n: int) -> dict:
    return {"num_beams": NUM_BEAMS, "min_new_tokens": n, "length_penalty": 1.0, "early_stopping": False}


def _mlxgp_argv(ctx: Context, model: Path, ids: list[int], n: int) -> list[str]:
    argv = [str(ctx.mlxgp_bin), "generate", "--model", str(model), "--input-ids", ",".join(map(str, ids)),
            "--max-new-tokens", str(n), "--json"]
    if model == HF_F32_DIR:
        argv += ["--dtype", "float32"]
    for k, v in _settings(n).items():
        argv += ["--" + k.replace("_", "-"), str(v).lower() if isinstance(v, bool) else str(v)]
    return argv


def _hf_argv(ctx: Context, model: Path, ids: list[int], n: int) -> list[str]:
    return [str(ctx.python), str(WORKER), str(model), ",".join(map(str, ids)), str(n), json.dumps(_settings(n))]


def _tokens_per_s(stats: dict, n: int) -> float:
    """mlxgp reports prefill and per-step decode speeds; the wall time is their sum."""
    if "beam_tokens_per_s" in stats:
        return stats["beam_tokens_per_s"]
    seconds = stats["prompt_tokens"] / stats["prefill_tokens_per_s"] + (n - 1) / stats["decode_tokens_per_s"]
    return n / seconds


@dataclass
class Engine:
    name: str
    model: Path
    argv: object
    speeds: list = field(default_factory=list)
    tokens: list | None = None
    error: str | None = None


@section("beams", "Beam search")
def run(ctx: Context) -> list[Table]:
    ids = prompt_ids(HF_F32_DIR / "tokenizer.json")
    n = min(ctx.max_new_tokens, MAX_NEW_TOKENS)
    engines = [Engine("mlxgp", HF_F32_DIR, _mlxgp_argv), Engine("transformers", HF_F32_DIR, _hf_argv),
               Engine("mlxgp", DEFAULT_GGUF, _mlxgp_argv)]
    for e in engines:
        if e.name == "mlxgp":
            e.error = ctx.mlxgp_missing()
    ctx.log("[beams] " + ", ".join(f"{e.name} on {e.model.name}" for e in engines))
    for rep in range(ctx.repeats):
        for e in engines:
            if e.error:
                continue
            try:
                r = run_json(e.argv(ctx, e.model, ids, n), RUN_TIMEOUT_S)
                tokens = r.doc["sequences"][0]["token_ids"]
                if len(tokens) != n:
                    raise RunError(f"generated {len(tokens)} tokens, expected {n}")
            except RunError as err:
                e.error = str(err)
                continue
            e.tokens = tokens
            e.speeds.append(_tokens_per_s(r.stats, n))
            ctx.log(f"  {e.name:12} {e.model.name:34} run {rep + 1}/{ctx.repeats}: {e.speeds[-1]:,.1f} tok/s")

    table = Table(title=f"Beam search tok/s: num_beams={NUM_BEAMS}, {len(ids)}-token prompt, {n} new tokens, "
                        f"median of {ctx.repeats} runs",
                  columns=["engine", "model", "tok/s", "vs transformers"])
    hf = next(e for e in engines if e.name == "transformers")
    hf_speed = statistics.median(hf.speeds) if hf.speeds and not hf.error else None
    for e in engines:
        if e.error:
            table.failures.append(f"{e.name} on {e.model.name}: {e.error}")
            table.rows.append([e.name, e.model.name, f"failed: {e.error}", ""])
            continue
        speed = statistics.median(e.speeds)
        ratio = f"{speed / hf_speed:.2f}x" if hf_speed else "n/a"
        table.rows.append([e.name, e.model.name, f"{speed:,.1f}", ratio])
    same = [e for e in engines if e.model == HF_F32_DIR and e.tokens is not None]
    if len(same) == 2 and same[0].tokens != same[1].tokens:
        table.notes.append("note: mlxgp and transformers returned different tokens on the fp32 folder")
    table.notes += [
        f"Beam search with num_beams={NUM_BEAMS}, length_penalty=1, early_stopping=False, min_new_tokens={n} (EOS "
        "masked, so every run makes all its steps). tok/s = new tokens of the best sequence / generation wall "
        "time, prefill included (transformers has no streamer for beams; mlxgp's is the sum of its prefill and "
        "decode times). Each run is a fresh process; model loading is not timed.",
        f"Target: mlxgp >= {TARGET:.0f}x transformers on the same fp32 folder. The Q4_1 GGUF row is for "
        "information.",
    ]
    return [table]
