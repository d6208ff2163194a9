"""Structured-output overhead: greedy decode tok/s with and without a JSON-schema constraint, at batch 1
and batch 8, for mlxgp (xgrammar's C++ core inside its pipeline) and transformers with xgrammar's own
transformers LogitsProcessor, same prompt ids and weights; and the constraint's set-up time (vocabulary
preparation + schema compile)."""
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import DEFAULT_GGUF, HF_F32_DIR, ROOT
from runner import RunError, run_json

from . import Context, Table, section
from .batching import STATS_LINE, _run

WORKER = ROOT / "bench" / "workers" / "transformers_xgrammar_worker.py"
RUN_TIMEOUT_S = 600
MAX_NEW_TOKENS = 64
BATCHES = (1, 8)
PROMPT = "A JSON array of one hundred random integers between 0 and 1000: "
# At least 60 items: no run can close the array (and stop) before MAX_NEW_TOKENS, so constrained and
# plain runs make the same number of tokens.
SCHEMA = {"type": "array", "items": {"type": "integer"}, "minItems": 60}


def _ids() -> list[int]:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(HF_F32_DIR / "tokenizer.json")).encode(PROMPT, add_special_tokens=False).ids


@dataclass
class Engine:
    name: str
    model: Path
    # (batch, constrained) -> decode tok/s of each run
    decode: dict = field(default_factory=dict)
    setup: list = field(default_factory=list)
    error: str | None = None


def _mlxgp_model_flags(model: Path) -> list[str]:
    return ["--model", str(model)] + (["--dtype", "float32"] if model == HF_F32_DIR else [])


def _mlxgp(ctx: Context, e: Engine, ids: list[int], batch: int, constrained: bool, work: Path, n: int) -> float:
    schema_file = work / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    flags = ["--json-schema", str(schema_file)] if constrained else ["--ignore-eos"]
    if batch == 1:
        r = run_json([str(ctx.mlxgp_bin), "generate", *_mlxgp_model_flags(e.model), "--input-ids",
                      ",".join(map(str, ids)), "--max-new-tokens", str(n), "--json", *flags], RUN_TIMEOUT_S)
        if r.stats.get("generated_tokens") != n:
            raise RunError(f"generated {r.stats.get('generated_tokens')} tokens, expected {n}")
        return r.stats["decode_tokens_per_s"]
    requests = work / "requests.jsonl"
    requests.write_text("".join(json.dumps({"input_ids": ids}) + "\n" for _ in range(batch)))
    out, err = _run([str(ctx.mlxgp_bin), "generate", *_mlxgp_model_flags(e.model), "--prompts-file", str(requests),
                     "--batch-size", str(batch), "--max-new-tokens", str(n), "--json", *flags])
    docs = [json.loads(line) for line in out.splitlines() if line.strip()]
    if any(d["stats"]["generated_tokens"] != n for d in docs) or len(docs) != batch:
        raise RunError(f"expected {batch} requests of {n} tokens")
    # Every row makes n tokens; the shortest decode window (the row prefilled last) is the batch's decode phase.
    window = min((d["stats"]["generated_tokens"] - 1) / d["stats"]["decode_tokens_per_s"] for d in docs)
    if not any(STATS_LINE.search(line) for line in err.splitlines()):
        raise RunError("no [stats] line")
    return batch * (n - 1) / window


def _mlxgp_setup(ctx: Context, e: Engine, ids: list[int], work: Path) -> float:
    """Wall time of a one-token run with the schema minus the same run without it."""
    schema_file = work / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    base = [str(ctx.mlxgp_bin), "generate", *_mlxgp_model_flags(e.model), "--input-ids", ",".join(map(str, ids)),
            "--max-new-tokens", "1", "--json"]
    with_schema = run_json(base + ["--json-schema", str(schema_file)], RUN_TIMEOUT_S).wall_s
    plain = run_json(base, RUN_TIMEOUT_S).wall_s
    return with_schema - plain


def _transformers(ctx: Context, e: Engine, ids: list[int], batch: int, constrained: bool, n: int) -> tuple[float, float]:
    r = run_json([str(ctx.python), str(WORKER), str(e.model), ",".join(map(str, ids)), str(batch), str(n),
                  json.dumps(SCHEMA) if constrained else "-"], RUN_TIMEOUT_S)
    if len(r.token_ids) != n:
        raise RunError(f"generated {len(r.token_ids)} tokens, expected {n}")
    return r.stats["decode_tokens_per_s"], r.doc.get("setup_s", 0.0)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.1f}"


@section("structured", "Structured outputs (JSON schema) overhead")
def run(ctx: Context) -> list[Table]:
    ids = _ids()
    n = min(ctx.max_new_tokens, MAX_NEW_TOKENS)
    engines = [Engine("mlxgp", HF_F32_DIR), Engine("transformers + xgrammar", HF_F32_DIR), Engine("mlxgp", DEFAULT_GGUF)]
    for e in engines:
        if e.name == "mlxgp":
            e.error = ctx.mlxgp_missing()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for rep in range(ctx.repeats):
            order = [False, True] if rep % 2 == 0 else [True, False]  # alternate: drift hits both alike
            for e in engines:
                for batch in BATCHES:
                    for constrained in order:
                        if e.error:
                            continue
                        try:
                            if e.name == "mlxgp":
                                tps = _mlxgp(ctx, e, ids, batch, constrained, work, n)
                            else:
                                tps, setup = _transformers(ctx, e, ids, batch, constrained, n)
                                if constrained and batch == 1:
                                    e.setup.append(setup)
                        except (RunError, KeyError, ValueError, ZeroDivisionError) as err:
                            e.error = f"batch {batch} {'schema' if constrained else 'plain'}: {err}"
                            continue
                        e.decode.setdefault((batch, constrained), []).append(tps)
                        ctx.log(f"  {e.name:24} {e.model.name:34} batch {batch} {'schema' if constrained else 'plain '}"
                                f" run {rep + 1}/{ctx.repeats}: decode {_fmt(tps)} tok/s")
                if e.name == "mlxgp" and not e.error:
                    try:
                        e.setup.append(_mlxgp_setup(ctx, e, ids, work))
                    except RunError as err:
                        e.error = f"set-up: {err}"

    table = Table(title=f"Greedy decode tok/s with and without a JSON-schema constraint: {len(ids)}-token prompt, "
                        f"{n} new tokens per row, median of {ctx.repeats} runs",
                  columns=["engine", "model", "batch", "plain tok/s", "schema tok/s", "slowdown",
                           "set-up s (vocabulary + compile)"])
    for e in engines:
        if e.error:
            table.failures.append(f"{e.name} on {e.model.name}: {e.error}")
            table.rows.append([e.name, e.model.name, "", f"failed: {e.error}", "", "", ""])
            continue
        for batch in BATCHES:
            plain = statistics.median(e.decode[(batch, False)])
            con = statistics.median(e.decode[(batch, True)])
            setup = f"{statistics.median(e.setup):.2f}" if e.setup and batch == 1 else ""
            table.rows.append([e.name, e.model.name, batch, _fmt(plain), _fmt(con), f"{(plain / con - 1) * 100:+.1f}%", setup])
    table.notes = [
        f"schema = {json.dumps(SCHEMA)} (at least 60 items, so no row can end before {n} tokens; plain runs ignore "
        "EOS): every run makes exactly the same number of tokens. Prompt: " + json.dumps(PROMPT) + " (raw text).",
        "mlxgp: `generate --json-schema F` (batch 8: `--prompts-file` with 8 copies of the request); decode tok/s "
        "as in the batching table. transformers: `generate(logits_processor=[xgrammar.contrib.hf.LogitsProcessor"
        "(compiled)])` on B identical rows, fp32, its default threads; decode tok/s from a streamer's stamps.",
        "slowdown = plain tok/s / schema tok/s - 1 (target for mlxgp: under 5%). set-up: mlxgp = wall time of a "
        "one-token run with the schema minus the same run without it (its token texts from its own tokenizer, "
        "then xgrammar's TokenizerInfo and compile); transformers + xgrammar = TokenizerInfo.from_huggingface "
        "+ compile_json_schema, timed in the worker.",
    ]
    return [table]
