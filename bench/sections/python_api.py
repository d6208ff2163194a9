"""Python API overhead: greedy decode tokens/s of mlx_gen_parity.generate against the mlxgp CLI on the
same model, prompt ids and settings, each run a fresh process, alternating order. Target: the Python
package within 3% of the CLI (the same C++ generator runs; only the call and result crossing differ)."""
import statistics

from common import DEFAULT_GGUF, HF_F32_DIR, ROOT
from prompt import prompt_ids
from runner import RunError, run_json

from . import Context, Table, section

RUN_TIMEOUT_S = 600
WORKER = ROOT / "bench" / "workers" / "mlxgp_python_worker.py"


@section("python_api", "Python API overhead")
def run(ctx: Context) -> list[Table]:
    table = Table(title="greedy decode tok/s: mlx_gen_parity.generate vs the mlxgp CLI", columns=[
        "model", "mlxgp CLI tok/s", "Python tok/s", "Python vs CLI", "tokens identical"])
    if missing := ctx.mlxgp_missing():
        table.failures.append(missing)
        return [table]
    ids = prompt_ids(HF_F32_DIR / "tokenizer.json")
    n = ctx.max_new_tokens
    engines = {
        "cli": lambda m: [str(ctx.mlxgp_bin), "generate", "--model", str(m), "--input-ids", ",".join(map(str, ids)),
                          "--max-new-tokens", str(n), "--ignore-eos", "--json"],
        "python": lambda m: [str(ctx.python), str(WORKER), str(m), ",".join(map(str, ids)), str(n)],
    }
    for model in (DEFAULT_GGUF, HF_F32_DIR):
        speeds, tokens = {k: [] for k in engines}, {}
        for rep in range(ctx.repeats):
            order = list(engines) if rep % 2 == 0 else list(reversed(engines))
            for name in order:
                try:
                    r = run_json(engines[name](model), RUN_TIMEOUT_S)
                except RunError as err:
                    table.failures.append(f"{model.name} {name}: {err}")
                    continue
                speeds[name].append(r.stats["decode_tokens_per_s"])
                tokens.setdefault(name, r.token_ids)
                ctx.log(f"  [python_api] {model.name:34} {name:7} run {rep + 1}: "
                        f"{r.stats['decode_tokens_per_s']:.1f} tok/s")
        if not speeds["cli"] or not speeds["python"]:
            continue
        cli, py = statistics.median(speeds["cli"]), statistics.median(speeds["python"])
        same = "yes" if tokens.get("cli") == tokens.get("python") else "no"
        table.rows.append([model.name, f"{cli:.1f}", f"{py:.1f}", f"{(py - cli) / cli:+.1%}", same])
    table.notes.append(f"{len(ids)}-token prompt, {n} new tokens (EOS ignored), median of {ctx.repeats} runs per "
                       "engine, fresh process per run, engines alternating order. Both report the C++ "
                       "generator's decode rate (first token to last).")
    return [table]
