"""Bounded memory with a rotating KV cache: a 4,096-token greedy generation with max_kv_size 512 on
the default model. MLX's peak memory is read at token 1,024 and at token 4,096 (mlxgp's
--memory-trace, stats.memory_trace); with the cache capped at 512 positions it must stay flat (target:
growth under 5%). mlx-lm runs the same settings on the same MLX wheel, on the MLX 4-bit folder of the
same model (it cannot read GGUF). One run each: 4,096 tokens take minutes on a small CPU."""
from pathlib import Path

from common import DEFAULT_GGUF, HF_F32_DIR, MLX_Q4_DIR, PYTHON
from prompt import prompt_ids
from runner import RunError, run_json

from . import Context, Table, section

RUN_TIMEOUT_S = 1800
NEW_TOKENS = 4096
MAX_KV = 512
TRACE = (1024, 4096)
TARGET = 0.05
WORKER = Path(__file__).resolve().parents[1] / "workers" / "mlx_lm_memory_worker.py"


def _mib(b) -> str:
    return f"{b / 2**20:.1f}"


def _row(table: Table, engine: str, model, run) -> None:
    trace = {m["tokens"]: m for m in run.stats.get("memory_trace", [])}
    if any(t not in trace for t in TRACE):
        table.failures.append(f"{engine} {model.name}: no memory trace at {TRACE} (got {sorted(trace)})")
        return
    first, last = trace[TRACE[0]]["peak_bytes"], trace[TRACE[1]]["peak_bytes"]
    growth = (last - first) / first
    ok = "yes" if growth < TARGET else "NO"
    table.rows.append([engine, model.name, _mib(first), _mib(last), f"{growth:+.2%}",
                       _mib(trace[TRACE[1]]["active_bytes"]), ok])
    if engine == "mlxgp" and growth >= TARGET:
        table.failures.append(f"mlxgp {model.name}: peak memory grew {growth:.2%} from token {TRACE[0]} to {TRACE[1]}")


@section("memory", "Memory with a rotating KV cache")
def run(ctx: Context) -> list[Table]:
    table = Table(title=f"peak memory of a {NEW_TOKENS}-token generation, max_kv_size {MAX_KV}", columns=[
        "engine", "model", f"peak MiB @ {TRACE[0]}", f"peak MiB @ {TRACE[1]}", "growth", f"active MiB @ {TRACE[1]}",
        f"< {TARGET:.0%}"])
    ids = prompt_ids(HF_F32_DIR / "tokenizer.json")
    trace = ",".join(map(str, TRACE))
    if missing := ctx.mlxgp_missing():
        table.failures.append(missing)
    else:
        for model in (DEFAULT_GGUF,):
            argv = [str(ctx.mlxgp_bin), "generate", "--model", str(model), "--input-ids", ",".join(map(str, ids)),
                    "--max-new-tokens", str(NEW_TOKENS), "--ignore-eos", "--max-kv-size", str(MAX_KV),
                    "--memory-trace", trace, "--json"]
            try:
                r = run_json(argv, RUN_TIMEOUT_S)
            except RunError as err:
                table.failures.append(f"mlxgp {model.name}: {err}")
                continue
            ctx.log(f"  [memory] mlxgp {model.name}: {r.stats.get('memory_trace')}")
            _row(table, "mlxgp", model, r)
    for model in (MLX_Q4_DIR,):
        if not model.is_dir():
            table.notes.append(f"mlx-lm skipped for {model.name}: folder missing (bench/prepare_models.py)")
            continue
        argv = [str(PYTHON), str(WORKER), str(model), ",".join(map(str, ids)), str(NEW_TOKENS), str(MAX_KV), trace]
        try:
            r = run_json(argv, RUN_TIMEOUT_S)
        except RunError as err:
            table.notes.append(f"mlx-lm {model.name} failed: {err}")
            continue
        ctx.log(f"  [memory] mlx-lm {model.name}: {r.stats.get('memory_trace')}")
        _row(table, "mlx-lm", model, r)
    table.notes.append(f"{len(ids)}-token prompt, greedy, {NEW_TOKENS} new tokens (EOS ignored), rotating KV cache "
                       f"of {MAX_KV} positions (keep 4). Peak = mx.get_peak_memory() since the generation started "
                       "(weights included), read when the token count is reached; one run each.")
    return [table]
