"""Greedy generation speed, batch 1: mlxgp against mlx-lm and transformers on the same model folders
and the same prompt token ids, exactly max_new_tokens new tokens each (EOS ignored)."""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from common import DEFAULT_GGUF, HF_F32_DIR, MLX_MXFP4_DIR, MLX_NVFP4_DIR, MLX_Q4_DIR, ROOT
from prompt import prompt_ids
from runner import Measurement, Run, RunError, run_json

from . import Context, Table, section

WORKERS = ROOT / "bench" / "workers"
# The warm-up only has to pull the model files into the page cache: a short prompt and two tokens.
WARMUP_PROMPT_TOKENS = 16
WARMUP_NEW_TOKENS = 2
RUN_TIMEOUT_S = 600


@dataclass
class Engine:
    name: str
    # (ctx, model path, prompt ids, new tokens) -> argv
    argv: Callable[[Context, Path, list[int], int], list[str]]
    # ctx -> None when runnable, else why not
    unavailable: Callable[[Context], str | None] = lambda ctx: None


def _mlxgp_argv(ctx: Context, model: Path, ids: list[int], n: int) -> list[str]:
    return [str(ctx.mlxgp_bin), "generate", "--model", str(model), "--input-ids", ",".join(map(str, ids)),
            "--max-new-tokens", str(n), "--ignore-eos", "--json"]


def _mlxgp_unavailable(ctx: Context) -> str | None:
    missing = ctx.mlxgp_missing()
    return f"{missing}; set MLXGP_BIN or run `make bench`" if missing else None


def _worker(script: str):
    def argv(ctx: Context, model: Path, ids: list[int], n: int) -> list[str]:
        return [str(ctx.python), str(WORKERS / script), str(model), ",".join(map(str, ids)), str(n)]

    return argv


ENGINES = {
    "mlxgp": Engine("mlxgp", _mlxgp_argv, _mlxgp_unavailable),
    "mlx-lm": Engine("mlx-lm", _worker("mlx_lm_worker.py")),
    "transformers": Engine("transformers", _worker("transformers_worker.py")),
}


@dataclass
class Config:
    name: str
    model: Path
    engines: list[str]
    description: str


CONFIGS = [
    Config("mlx-q4", MLX_Q4_DIR, ["mlxgp", "mlx-lm"],
           "MLX 4-bit folder (mlx_lm.convert, affine, group 64) made from the fp32 folder"),
    Config("mlx-mxfp4", MLX_MXFP4_DIR, ["mlxgp", "mlx-lm"],
           "MLX mxfp4 folder (mlx_lm.convert --q-mode mxfp4: e2m1 values, an e8m0 scale per 32)"),
    Config("mlx-nvfp4", MLX_NVFP4_DIR, ["mlxgp", "mlx-lm"],
           "MLX nvfp4 folder (mlx_lm.convert --q-mode nvfp4: e2m1 values, an e4m3 scale per 16)"),
    Config("hf-f32", HF_F32_DIR, ["mlxgp", "mlx-lm", "transformers"],
           "fp32 HF safetensors folder (transformers' dequantization of the default GGUF)"),
    Config("gguf-q4_1", DEFAULT_GGUF, ["mlxgp"], "the default GGUF (Q4_1) as is, for information"),
]

COLUMNS = ["engine", "config", "prefill tok/s", "decode tok/s", "MLX peak MB", "max RSS MB",
           "mlxgp/engine prefill", "mlxgp/engine decode", "tokens = mlxgp"]


def _warm_up(ctx: Context, cfg: Config, name: str, ids: list[int]) -> str | None:
    """None when the engine ran, else why it cannot be measured. Not counted: it only pulls the model
    files into the page cache."""
    engine = ENGINES[name]
    if reason := engine.unavailable(ctx):
        return reason
    try:
        run_json(engine.argv(ctx, cfg.model, ids[:WARMUP_PROMPT_TOKENS], WARMUP_NEW_TOKENS), RUN_TIMEOUT_S)
    except RunError as e:
        return f"warm-up failed: {e}"
    return None


def _measure_once(ctx: Context, cfg: Config, name: str, ids: list[int]) -> Run:
    run = run_json(ENGINES[name].argv(ctx, cfg.model, ids, ctx.max_new_tokens), RUN_TIMEOUT_S)
    try:
        got, prompt, _ = run.stats["generated_tokens"], run.stats["prompt_tokens"], run.token_ids
    except (IndexError, KeyError, TypeError) as e:
        raise RunError(f"output lacks stats or token_ids ({e!r})") from None
    if got != ctx.max_new_tokens or prompt != len(ids):
        raise RunError(f"generated {got} tokens for a {prompt}-token prompt, "
                       f"expected {ctx.max_new_tokens} for {len(ids)}")
    return run


def _measure(ctx: Context, cfg: Config, ids: list[int]) -> dict[str, Measurement]:
    results = {name: Measurement(error=_warm_up(ctx, cfg, name, ids)) for name in cfg.engines}
    # Repeats interleave the engines, so a slow drift of the machine hits every engine alike.
    for rep in range(ctx.repeats):
        for name, m in results.items():
            if m.error:
                continue
            try:
                run = _measure_once(ctx, cfg, name, ids)
            except RunError as e:
                m.error = str(e)
                continue
            m.runs.append(run)
            ctx.log(f"  {cfg.name:10} {name:12} run {rep + 1}/{ctx.repeats}: prefill "
                    f"{_fmt(run.stats['prefill_tokens_per_s'])} tok/s, "
                    f"decode {_fmt(run.stats['decode_tokens_per_s'])} tok/s, {run.wall_s:.1f} s")
    return results


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def _mb(x: float | None) -> str:
    return "n/a" if x is None else f"{x / 1e6:,.0f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return "n/a" if not ours or not theirs else f"{ours / theirs:.2f}x"


def _same_prefix(a: list[int], b: list[int]) -> str:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return f"{n}/{max(len(a), len(b))}"


def _rows(cfg: Config, results: dict[str, Measurement]) -> list[list]:
    ours = results.get("mlxgp")
    ours_ok = ours is not None and ours.runs
    rows = []
    for name, m in results.items():
        if m.error:
            rows.append([name, cfg.name, f"failed: {m.error}"] + [""] * (len(COLUMNS) - 3))
            continue
        prefill, decode = m.median("prefill_tokens_per_s"), m.median("decode_tokens_per_s")
        peer = name != "mlxgp" and ours_ok
        rows.append([
            name, cfg.name, _fmt(prefill), _fmt(decode),
            _mb(m.median("peak_memory_bytes")), _mb(m.median("max_rss_bytes")),
            _ratio(ours.median("prefill_tokens_per_s"), prefill) if peer else "-",
            _ratio(ours.median("decode_tokens_per_s"), decode) if peer else "-",
            _same_prefix(ours.token_ids, m.token_ids) if peer else "-",
        ])
    return rows


@section("generation", "Greedy generation, batch 1")
def run(ctx: Context) -> list[Table]:
    ids = prompt_ids(HF_F32_DIR / "tokenizer.json")
    table = Table(
        title=f"Greedy generation, batch 1: {len(ids)}-token prompt, {ctx.max_new_tokens} new tokens "
              f"(EOS ignored), median of {ctx.repeats} runs",
        columns=COLUMNS)
    threads: set[int] = set()
    fp32: dict[str, Measurement] = {}
    for cfg in CONFIGS:
        ctx.log(f"[generation] {cfg.name}: {', '.join(cfg.engines)}")
        results = _measure(ctx, cfg, ids)
        if cfg.model == HF_F32_DIR:
            fp32 = results
        table.rows += _rows(cfg, results)
        threads |= {r.doc["torch_threads"] for m in results.values() for r in m.runs
                    if "torch_threads" in r.doc}
        table.failures += [f"{name} on {cfg.name}: {m.error}" for name, m in results.items() if m.error]
    table.notes = [
        "Configs: " + "; ".join(f"`{c.name}` = {c.description}" for c in CONFIGS) + ". Both folders' "
        "config.json also carry a top-level `rope_theta`, which mlx-lm 0.32 needs (it ignores "
        "transformers 5's `rope_parameters` and would silently fall back to 10000).",
        "Every run is a fresh process given the same prompt token ids; one short warm-up run per engine and "
        f"config ({WARMUP_PROMPT_TOKENS}-token prompt, {WARMUP_NEW_TOKENS} new tokens) is not counted. "
        "Runs of the engines are interleaved.",
        "prefill tok/s = prompt tokens / time to the first new token; decode tok/s = the other new tokens / "
        "time from the first to the last new token. mlxgp reports both itself (`--json` stats); the Python "
        "engines are timed the same way in bench/workers/.",
        "mlx-lm runs `mlx_lm.generate.generate_step` (greedy sampler, default prefill step); transformers "
        "runs `generate(do_sample=False, eos_token_id=None)` in fp32 with PyTorch's default thread count "
        f"({', '.join(map(str, sorted(threads))) or 'n/a'} threads).",
        "MLX peak MB = `get_peak_memory()` / 10^6 after generation, reset once the model is loaded (the MLX "
        "allocator's peak while generating, resident weights included; mlxgp and mlx-lm alike; not defined "
        "for PyTorch). max RSS MB = the process's maximum resident set "
        "size from `wait4` rusage / 10^6, the one measure comparable across all engines.",
        "mlxgp/engine = mlxgp's median over the peer's (above 1 = mlxgp faster). tokens = mlxgp: length of "
        "the common prefix of the greedy token ids.",
        _fp32_bound_note(ctx, table, fp32),
    ]
    return [table]


def bandwidth_gb_per_s(ctx: Context, table: Table) -> float | None:
    try:
        doc = run_json([str(ctx.python), str(ROOT / "bench" / "workers" / "bandwidth_worker.py")], 300).doc
        return float(doc["gb_per_s"])
    except (RunError, KeyError, TypeError, ValueError) as e:
        table.failures.append(f"bandwidth measurement: {e}")
        return None


def _fp32_bound_note(ctx: Context, table: Table, fp32: dict[str, Measurement]) -> str:
    """fp32 decode against the bandwidth bound (the CPU-speed issue asks for the fraction reached): each
    decoded token reads every weight once, the tied embedding included as the LM head."""
    weights = sum(f.stat().st_size for f in HF_F32_DIR.glob("*.safetensors"))
    gbps = bandwidth_gb_per_s(ctx, table)
    if not gbps or not weights:
        return "fp32 decode against the bandwidth bound: not measured (see failures)."
    bound = gbps * 1e9 / weights
    parts = [f"{name} {100 * m.median('decode_tokens_per_s') / bound:.0f}%" for name, m in fp32.items()
             if not m.error and m.runs]
    return (f"fp32 decode against the bandwidth bound: the folder's weights are {weights / 1e6:,.0f} MB, read "
            f"once per token; at {gbps:.1f} GB/s (bench/workers/bandwidth_worker.py) the bound is "
            f"{bound:.1f} tok/s. Reached: {', '.join(parts) or 'n/a'}.")
