"""Hook overhead: greedy decode tokens/s of mlxgp with one residual-injection hook (and with a persona
logit bias) against no hook, same prompt ids, same run. Target: one injection hook costs < 5%."""
import statistics
import tempfile
from pathlib import Path

import numpy as np

from common import DEFAULT_GGUF, HF_F32_DIR
from prompt import prompt_ids
from runner import RunError, run_json

from . import Context, Table, section

RUN_TIMEOUT_S = 600
LAYER = 12


def _argv(ctx: Context, model: Path, ids: list[int], n: int, extra: list[str]) -> list[str]:
    return [str(ctx.mlxgp_bin), "generate", "--model", str(model), "--input-ids", ",".join(map(str, ids)),
            "--max-new-tokens", str(n), "--ignore-eos", "--json", *extra]


@section("hooks", "Hook overhead")
def run(ctx: Context) -> list[Table]:
    table = Table(title="mlxgp greedy decode tok/s with hooks vs none", columns=[
        "model", "variant", "decode tok/s", "overhead vs no hook"])
    if missing := ctx.mlxgp_missing():
        table.failures.append(missing)
        return [table]
    from safetensors.numpy import save_file

    ids = prompt_ids(HF_F32_DIR / "tokenizer.json")
    n = ctx.max_new_tokens
    with tempfile.TemporaryDirectory() as tmp:
        vec = Path(tmp) / "v.safetensors"
        save_file({"steering_vector": (np.random.default_rng(0).standard_normal(576) * 0.1).astype(np.float32)},
                  str(vec))
        variants = {
            "no hook": [],
            f"injection at layer {LAYER}": ["--steer", str(vec), "--steer-layer", str(LAYER), "--steer-alpha", "2"],
            "persona logit bias": ["--persona-bias", str(vec), "--persona-alpha", "2"],
        }
        for model in (DEFAULT_GGUF, HF_F32_DIR):
            speeds = {name: [] for name in variants}
            for rep in range(ctx.repeats):
                order = list(variants) if rep % 2 == 0 else list(reversed(variants))
                for name in order:
                    try:
                        r = run_json(_argv(ctx, model, ids, n, variants[name]), RUN_TIMEOUT_S)
                    except RunError as err:
                        table.failures.append(f"{model.name} {name}: {err}")
                        continue
                    speeds[name].append(r.stats["decode_tokens_per_s"])
                    ctx.log(f"  [hooks] {model.name:34} {name:24} run {rep + 1}: "
                            f"{r.stats['decode_tokens_per_s']:.1f} tok/s")
            base = statistics.median(speeds["no hook"]) if speeds["no hook"] else None
            for name, values in speeds.items():
                if not values:
                    continue
                med = statistics.median(values)
                overhead = "" if name == "no hook" or base is None else f"{(base - med) / base:+.1%}"
                table.rows.append([model.name, name, f"{med:.1f}", overhead])
    table.notes.append(f"{len(ids)}-token prompt, {n} new tokens, median of {ctx.repeats} runs, variants "
                       "alternating order run to run. Overhead = (no hook - hooked) / no hook.")
    return [table]
