"""Batched greedy generation (continuous batching): aggregate throughput of B distinct prompts decoded
together, B = 1, 4, 8, 16, for `mlxgp generate --prompts-file` (default Q4_1 GGUF and fp32 HF folder),
transformers' batched generate() (fp32, left-padded with an attention mask) and mlx-lm's batch_generate
(4-bit MLX folder and fp32 folder), on the same prompt token ids. Every request makes exactly N new
tokens (EOS masked by min_new_tokens = N; mlx-lm: EOS ignored). mlxgp's batched tokens are checked
against each request run alone (greedy, batch 1)."""
import json
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import DEFAULT_GGUF, HF_F32_DIR, MLX_Q4_DIR, ROOT
from prompt import prompt_ids
from runner import RunError

from . import Context, Table, section

WORKERS = ROOT / "bench" / "workers"
PLOT = ROOT / "docs" / "batching.png"
BATCH_SIZES = (1, 4, 8, 16)
# Request i's prompt length (tokens of bench/prompt.py's text, from offset 7*i): every prefix of the list
# (the batch of its first B requests) averages about 50 tokens, so batch sizes differ in rows, not in
# prompt length.
PROMPT_LENGTHS = (50, 20, 80, 35, 65, 27, 72, 42, 58, 24, 76, 31, 69, 38, 61, 46)
# mlx-lm's MLX-ops matmuls run at ~3.6 GFLOP/s on this CPU (the matmul section), ~13 token-forwards/s for
# this model whatever the batch: N=128 at batch 16 would take ~4 min per run. It gets a reduced protocol
# (fewer tokens, batch sizes and runs), compared with mlxgp runs made with the same protocol.
MLX_LM_NEW_TOKENS = 32
MLX_LM_BATCH_SIZES = (1, 4, 8)
WARMUP_NEW_TOKENS = 2
RUN_TIMEOUT_S = 900
# Targets of the batching issue, at batch TARGET_BATCH.
TARGET_BATCH = 8
TARGET_VS_BATCH1 = 4.0  # mlxgp on the Q4_1 GGUF: aggregate at batch 8 / batch 1
TARGET_VS_HF = 2.0  # mlxgp / transformers, fp32 folder
TARGET_VS_MLX_LM = 1.5  # mlxgp / mlx-lm
STATS_LINE = re.compile(r"\[stats\] (\d+) requests, generated (\d+) tokens in ([0-9.]+) s")


@dataclass
class BatchRun:
    tokens: list[list[int]]  # per request, in request order
    seconds: float  # the whole batched generate call: prefill included, model loading excluded
    decode_seconds: float | None  # every request has its first token -> the last token
    wall_s: float = 0.0  # the process, loading included (logged only)
    torch_threads: int | None = None

    def aggregate(self) -> float:
        return sum(map(len, self.tokens)) / self.seconds

    def decode(self) -> float | None:
        steps = sum(len(t) - 1 for t in self.tokens)
        return steps / self.decode_seconds if self.decode_seconds and steps > 0 else None


@dataclass
class Engine:
    name: str  # mlxgp | transformers | mlx-lm
    config: str  # the model's label in the table
    model: Path
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    new_tokens: int | None = None  # None: ctx.max_new_tokens
    single_run: bool = False  # one measured run instead of ctx.repeats
    peer: str | None = None  # the mlxgp engine key it is compared with
    flags: tuple[str, ...] = ()  # more mlxgp generate flags
    runs: dict[int, list[BatchRun]] = field(default_factory=dict)  # batch size -> runs
    same: dict[int, str] = field(default_factory=dict)  # batch size -> requests equal to batch 1, "k/B"
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.name} {self.config}" + (f" n{self.new_tokens}" if self.new_tokens else "")

    def tokens(self, ctx: Context) -> int:
        return min(self.new_tokens, ctx.max_new_tokens) if self.new_tokens else ctx.max_new_tokens

    def median(self, batch: int, metric: str) -> float | None:
        values = [getattr(r, metric)() for r in self.runs.get(batch, [])]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None


def _engines() -> list[Engine]:
    return [
        Engine("mlxgp", "gguf-q4_1", DEFAULT_GGUF),
        # llama.cpp's arithmetic for the Q4_1 / Q8_0 blocks (activations rounded to 8 bits, VNNI products).
        Engine("mlxgp", "gguf-q4_1 int8", DEFAULT_GGUF, flags=("--int8-activations",)),
        # ... with the KV cache stored as float16 (llama.cpp's default): half the bytes attention reads.
        Engine("mlxgp", "gguf-q4_1 int8 kv-f16", DEFAULT_GGUF,
               flags=("--int8-activations", "--kv-cache-dtype", "float16")),
        Engine("mlxgp", "hf-f32", HF_F32_DIR),
        Engine("transformers", "hf-f32", HF_F32_DIR, peer="mlxgp hf-f32"),
        # The same protocol as mlx-lm's below, for a like-for-like mlxgp/mlx-lm ratio.
        Engine("mlxgp", "gguf-q4_1", DEFAULT_GGUF, MLX_LM_BATCH_SIZES, MLX_LM_NEW_TOKENS, True),
        Engine("mlxgp", "hf-f32", HF_F32_DIR, MLX_LM_BATCH_SIZES, MLX_LM_NEW_TOKENS, True),
        Engine("mlx-lm", "mlx-q4", MLX_Q4_DIR, MLX_LM_BATCH_SIZES, MLX_LM_NEW_TOKENS, True,
               peer=f"mlxgp gguf-q4_1 n{MLX_LM_NEW_TOKENS}"),
        Engine("mlx-lm", "hf-f32", HF_F32_DIR, MLX_LM_BATCH_SIZES, MLX_LM_NEW_TOKENS, True,
               peer=f"mlxgp hf-f32 n{MLX_LM_NEW_TOKENS}"),
    ]


def _requests(ids: list[int]) -> list[list[int]]:
    out = []
    for i, n in enumerate(PROMPT_LENGTHS):
        n = min(n, len(ids))
        start = (7 * i) % (len(ids) - n + 1)
        out.append(ids[start:start + n])
    return out


def _write_requests(path: Path, prompts: list[list[int]]) -> Path:
    path.write_text("".join(json.dumps({"input_ids": p}) + "\n" for p in prompts))
    return path


def _mlxgp_flags(model: Path, n: int, extra: tuple[str, ...] = ()) -> list[str]:
    flags = ["--model", str(model), "--min-new-tokens", str(n), "--max-new-tokens", str(n), "--json", *extra]
    return flags + (["--dtype", "float32"] if model == HF_F32_DIR else [])


def _run(cmd: list[str]) -> tuple[str, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise RunError(f"timed out after {RUN_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        raise RunError(f"exit {proc.returncode}: {last[0][:300]}")
    return proc.stdout, proc.stderr


def _run_mlxgp(ctx: Context, e: Engine, requests_file: Path, batch: int, n: int) -> BatchRun:
    out, err = _run([str(ctx.mlxgp_bin), "generate", "--prompts-file", str(requests_file), "--batch-size",
                     str(batch)] + _mlxgp_flags(e.model, n, e.flags))
    try:
        docs = [json.loads(line) for line in out.splitlines() if line.strip()]
        tokens = [d["sequences"][0]["token_ids"] for d in docs]
        # Each request's decode clock runs from its own first token (read when it was prefilled) to its last
        # one; every request makes n tokens, so all end on the same step and the shortest window (the
        # request prefilled last) is the decode phase of the whole batch.
        windows = [(d["stats"]["generated_tokens"] - 1) / d["stats"]["decode_tokens_per_s"] for d in docs
                   if d["stats"].get("decode_tokens_per_s")]
    except (ValueError, KeyError, IndexError, TypeError) as ex:
        raise RunError(f"unexpected output ({ex!r}): {out[:200]!r}") from None
    stats = [m for line in err.splitlines() if (m := STATS_LINE.search(line))]
    if not stats:
        raise RunError(f"no [stats] line on stderr: {err[-200:]!r}")
    return BatchRun(tokens, float(stats[-1].group(3)), min(windows) if windows else None)


def _run_worker(ctx: Context, e: Engine, requests_file: Path, n: int) -> BatchRun:
    script = {"transformers": "transformers_batch_worker.py", "mlx-lm": "mlx_lm_batch_worker.py"}[e.name]
    out, _ = _run([str(ctx.python), str(WORKERS / script), str(e.model), str(requests_file), str(n)])
    try:
        doc = json.loads(out.strip().splitlines()[-1])
        return BatchRun([r["token_ids"] for r in doc["requests"]], doc["stats"]["seconds"],
                        doc["stats"]["decode_seconds"], torch_threads=doc.get("torch_threads"))
    except (ValueError, KeyError, IndexError, TypeError) as ex:
        raise RunError(f"unexpected output ({ex!r}): {out[:200]!r}") from None


def _measure_once(ctx: Context, e: Engine, requests_file: Path, batch: int, n: int, warmup: bool = False) -> BatchRun:
    start = time.perf_counter()
    run = (_run_mlxgp(ctx, e, requests_file, batch, n) if e.name == "mlxgp"
           else _run_worker(ctx, e, requests_file, n))
    if len(run.tokens) != batch or any(len(t) != n for t in run.tokens):
        raise RunError(f"returned {len(run.tokens)} requests of {sorted({len(t) for t in run.tokens})} tokens, "
                       f"expected {batch} of {n}")
    if not warmup and run.decode_seconds is None:
        raise RunError("no decode time reported")
    run.wall_s = time.perf_counter() - start
    return run


def _reference(ctx: Context, model: Path, prompts: list[list[int]], n: int, extra: tuple[str, ...] = ()) -> list[list[int]]:
    """Each request alone through the plain single-prompt path (`--input-ids`), the same settings."""
    out = []
    for ids in prompts:
        stdout, _ = _run([str(ctx.mlxgp_bin), "generate", "--input-ids", ",".join(map(str, ids))]
                         + _mlxgp_flags(model, n, extra))
        out.append(json.loads(stdout.strip().splitlines()[-1])["sequences"][0]["token_ids"])
    return out


def _mismatches(runs: list[BatchRun], reference: list[list[int]]) -> list[str]:
    """'request i (first difference at new token k)' for each request whose tokens differ in any run."""
    out = []
    for i, ref in enumerate(reference):
        for run in runs:
            if i >= len(run.tokens) or run.tokens[i] == ref[:len(run.tokens[i])]:
                continue
            k = next((j for j, (a, b) in enumerate(zip(run.tokens[i], ref)) if a != b), len(ref))
            out.append(f"request {i} (from new token {k})")
            break
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if not a or not b else f"{a / b:.2f}x"


def _met(ratio: float | None, target: float) -> str:
    if ratio is None:
        return "not measured"
    return f"{ratio:.2f}x, {'met' if ratio >= target else 'NOT met'}"


def _plot(engines: list[Engine], ctx: Context) -> str:
    """Writes docs/batching.png (aggregate tok/s against batch size per engine); returns the note."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ("Plot: not drawn, matplotlib is missing from .venv (requirements.txt pins it: run "
                "scripts/setup.sh).")
    if not ctx.write_files:
        return "Plot: not written (--no-write)."
    try:
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        for e in engines:
            sizes = [b for b in e.batch_sizes if e.median(b, "aggregate")]
            if sizes:
                ax.plot(sizes, [e.median(b, "aggregate") for b in sizes], marker="o",
                        label=f"{e.name} {e.config}, {e.tokens(ctx)} new tokens")
        ax.set_xlabel("batch size (distinct prompts)")
        ax.set_ylabel("aggregate tok/s (prefill included)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(list(BATCH_SIZES), [str(b) for b in BATCH_SIZES])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Batched greedy generation, SmolLM2-135M, CPU")
        fig.tight_layout()
        PLOT.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(PLOT)
        plt.close(fig)
    except Exception as ex:  # a plot must not fail the benchmark
        return f"Plot: drawing docs/batching.png failed ({ex!r})."
    return "Plot of aggregate tok/s against batch size per engine: ![aggregate tok/s by batch size](batching.png)"


COLUMNS = ["engine", "model", "batch", "new tokens", "aggregate tok/s", "decode tok/s", "aggregate vs batch 1",
           "decode vs batch 1", "mlxgp/engine aggregate", "mlxgp/engine decode", "tokens = batch 1"]


@section("batching", "Batched generation (continuous batching)")
def run(ctx: Context) -> list[Table]:
    ids = prompt_ids(HF_F32_DIR / "tokenizer.json")
    prompts = _requests(ids)
    engines = _engines()
    missing = ctx.mlxgp_missing()
    with tempfile.TemporaryDirectory(prefix="mlxgp-bench-batching-") as tmp:
        files = {b: _write_requests(Path(tmp) / f"requests-{b}.jsonl", prompts[:b]) for b in BATCH_SIZES}
        warm = _write_requests(Path(tmp) / "warmup.jsonl", [prompts[0][:16]])
        # Warm-up (not counted): one short run per engine and model pulls the model files into the page cache.
        warmed: dict[tuple[str, Path], str | None] = {}
        for e in engines:
            if e.name == "mlxgp" and missing:
                e.error = missing
                continue
            if (e.name, e.model, e.flags) not in warmed:
                try:
                    _measure_once(ctx, e, warm, 1, WARMUP_NEW_TOKENS, warmup=True)
                    warmed[(e.name, e.model, e.flags)] = None
                except RunError as ex:
                    warmed[(e.name, e.model, e.flags)] = f"warm-up failed: {ex}"
            e.error = warmed[(e.name, e.model, e.flags)]
        ctx.log("[batching] " + ", ".join(f"{e.name} on {e.config} ({e.tokens(ctx)} new tokens)" for e in engines))
        # Repeats interleave engines and batch sizes, so a drift of the machine's load hits all alike.
        for rep in range(ctx.repeats):
            for b in BATCH_SIZES:
                for e in engines:
                    if e.error or b not in e.batch_sizes or (e.single_run and rep > 0):
                        continue
                    try:
                        r = _measure_once(ctx, e, files[b], b, e.tokens(ctx))
                    except RunError as ex:
                        e.error = f"batch {b}: {ex}"
                        continue
                    e.runs.setdefault(b, []).append(r)
                    ctx.log(f"  {e.name:12} {e.config:9} n={e.tokens(ctx):<3} batch {b:2} run "
                            f"{rep + 1}/{1 if e.single_run else ctx.repeats}: {_fmt(r.aggregate())} tok/s aggregate, "
                            f"{_fmt(r.decode())} decode, {r.seconds:.1f} s ({r.wall_s:.1f} s with loading)")
        # Batched tokens against each request alone at batch 1 (the plain --input-ids path).
        check: dict[str, list[str]] = {}
        failures: list[str] = []
        for model, extra in ((DEFAULT_GGUF, ()), (DEFAULT_GGUF, ("--int8-activations",)), (HF_F32_DIR, ())):
            ours = [e for e in engines
                    if e.name == "mlxgp" and e.model == model and e.flags == extra and not e.error and e.runs]
            if not ours:
                continue
            start = time.perf_counter()
            try:
                reference = _reference(ctx, model, prompts, ctx.max_new_tokens, extra)
                ctx.log(f"  mlxgp        {ours[0].config:9} batch-1 reference, {len(prompts)} requests alone: "
                        f"{time.perf_counter() - start:.1f} s")
            except (RunError, ValueError, KeyError, IndexError) as ex:
                failures.append(f"mlxgp batch-1 reference on {ours[0].config}: {ex}")
                continue
            for e in ours:
                for b, runs in sorted(e.runs.items()):
                    bad = _mismatches(runs, reference)
                    check[f"{e.key} batch {b}"] = bad
                    e.same[b] = f"{b - len(bad)}/{b}"

    tables = _tables(ctx, engines, prompts, check)
    tables[0].failures += failures
    return tables


def _tables(ctx: Context, engines: list[Engine], prompts: list[list[int]], check: dict[str, list[str]]) -> list[Table]:
    by_key = {e.key: e for e in engines}
    n = ctx.max_new_tokens
    table = Table(title=f"Batched greedy generation: B distinct prompts ({min(PROMPT_LENGTHS)}-{max(PROMPT_LENGTHS)} "
                        f"tokens) decoded together, {n} new tokens each (mlx-lm rows and their mlxgp pairs: "
                        f"{min(n, MLX_LM_NEW_TOKENS)}), median of {ctx.repeats} runs (mlx-lm protocol: 1 run)",
                  columns=COLUMNS)
    for e in engines:
        if e.error:
            table.failures.append(f"{e.name} on {e.config}: {e.error}")
            table.rows.append([e.name, e.config, f"failed: {e.error}"] + [""] * (len(COLUMNS) - 3))
        peer = by_key.get(e.peer) if e.peer else None
        for b in e.batch_sizes:
            if b not in e.runs:
                continue
            agg, dec = e.median(b, "aggregate"), e.median(b, "decode")
            rows_peer = peer is not None and b in peer.runs
            table.rows.append([
                e.name, e.config, b, e.tokens(ctx), _fmt(agg), _fmt(dec),
                _ratio(agg, e.median(1, "aggregate")) if b != 1 else "-",
                _ratio(dec, e.median(1, "decode")) if b != 1 else "-",
                _ratio(peer.median(b, "aggregate"), agg) if rows_peer else "-",
                _ratio(peer.median(b, "decode"), dec) if rows_peer else "-",
                e.same.get(b, "n/a") if e.name == "mlxgp" else "-",
            ])

    def ratio(a: str, b: str, batch: int, metric: str = "aggregate") -> float | None:
        ea, eb = by_key.get(a), by_key.get(b)
        if ea is None or eb is None:
            return None
        x, y = ea.median(batch, metric), eb.median(batch, metric)
        return x / y if x and y else None

    t = TARGET_BATCH
    nl = f" n{MLX_LM_NEW_TOKENS}"
    mismatched = {k: v for k, v in check.items() if v}
    threads = sorted({r.torch_threads for e in engines for runs in e.runs.values() for r in runs
                      if r.torch_threads is not None})

    def target(pairs: tuple[str, str] | None, goal: float, own: str = "mlxgp gguf-q4_1") -> str:
        """The aggregate ratio at batch t against the goal, with the decode-only ratio for information;
        pairs = (engine, peer) keys, or None for engine `own`'s batch t over its batch 1."""
        if pairs is None:
            e = by_key[own]
            agg, dec = ([e.median(t, m) / e.median(1, m) if e.median(t, m) and e.median(1, m) else None
                         for m in ("aggregate", "decode")])
        else:
            agg, dec = ratio(*pairs, t), ratio(*pairs, t, "decode")
        return _met(agg, goal) + (f" (decode-only {dec:.2f}x)" if dec else "")

    table.notes = [
        f"Requests: {len(prompts)} prompts cut from bench/prompt.py's text (token ids, lengths "
        f"{', '.join(map(str, PROMPT_LENGTHS))}); batch B runs the first B of them (each prefix averages about "
        "50 tokens). Every engine gets the same token ids; every request makes exactly the stated number of new "
        "tokens.",
        "aggregate tok/s = all new tokens of the batch / wall time of the whole batched generate call, prefill "
        "included, model loading and process start excluded (mlxgp: the `[stats] ... in S s` line of "
        "`generate --prompts-file`; Python engines: the generate call timed in the worker). decode tok/s = "
        "B x (new tokens - 1) / the time from the moment every request has its first new token to the last "
        "new token (mlxgp: the shortest per-request decode window of its `--json` stats, i.e. the request "
        "prefilled last; transformers: a streamer's per-step stamps; mlx-lm: stamps taken when "
        "BatchGenerator.next_generated() returns, see bench/workers/mlx_lm_batch_worker.py).",
        f"mlxgp: `generate --prompts-file F --batch-size B --min-new-tokens N --max-new-tokens N --json` "
        "(each prompt prefilled alone, then all rows decoded together, left-padded; `--dtype float32` on the "
        "fp32 folder; `gguf-q4_1 int8` adds --int8-activations: the GGUF's Q4_1 / Q8_0 blocks multiplied as "
        "llama.cpp does, activations rounded to 8 bits per 32 values; `kv-f16` also adds --kv-cache-dtype float16: "
        "the KV cache stored as halves, llama.cpp's default cache type). transformers: one left-padded batch with an attention mask, `generate(do_sample=False, "
        f"min_new_tokens=N, max_new_tokens=N)`, fp32, PyTorch's default threads "
        f"({', '.join(map(str, threads)) or 'n/a'}). mlx-lm: "
        "`batch_generate(model, tokenizer, prompts, max_tokens=N, prefill_batch_size=B, completion_batch_size=B)` "
        "with the tokenizer's EOS list emptied (its only stop tokens; an EOS-masking logits processor would run "
        "row by row in mlx-lm 0.32.2 and slow it down); all prompts are prefilled as one right-padded batch.",
        f"mlx-lm protocol: its MLX-ops matmuls reach ~13 token-forwards/s for this model on this CPU whatever "
        f"the batch (matmul section), so N = {MLX_LM_NEW_TOKENS} new tokens, batch sizes "
        f"{', '.join(map(str, MLX_LM_BATCH_SIZES))} and one run each (batch 16 at N = 128 would take ~4 min a "
        f"run). mlxgp runs the same protocol (rows `new tokens` = {MLX_LM_NEW_TOKENS}) and the mlxgp/mlx-lm "
        "ratios compare those like-for-like runs (4-bit: mlxgp's Q4_1 GGUF against mlx-lm's 4-bit MLX folder, "
        "not the same weights; fp32 against fp32, the same weights).",
        "Each run is a fresh process; one short warm-up run per engine and model (16-token prompt, "
        f"{WARMUP_NEW_TOKENS} new tokens) is not counted. aggregate/decode vs batch 1 = the engine's figure at "
        "batch B over its own batch-1 figure. mlxgp/engine = mlxgp's figure over the peer's at the same batch "
        "size (transformers: mlxgp on the fp32 folder; mlx-lm: the like-for-like mlxgp rows), above 1 = mlxgp "
        "faster.",
        "tokens = batch 1: requests of the batch whose mlxgp tokens (every run) equal that request run alone "
        "through the single-prompt path (`generate --input-ids`, same settings). "
        + ("Mismatches (recorded, not a failure: a greedy near-tie can flip under batched arithmetic): "
           + "; ".join(f"{k}: {', '.join(v)}" for k, v in mismatched.items()) + "." if mismatched
           else "No mismatch." if check else "Not checked (no mlxgp run)."),
        f"Targets (batching issue), batch {t}: aggregate >= {TARGET_VS_BATCH1:g}x batch 1 on the Q4_1 GGUF: "
        f"{target(None, TARGET_VS_BATCH1)} (with --int8-activations: "
        f"{target(None, TARGET_VS_BATCH1, 'mlxgp gguf-q4_1 int8')}; and a float16 KV cache: "
        f"{target(None, TARGET_VS_BATCH1, 'mlxgp gguf-q4_1 int8 kv-f16')}); mlxgp >= {TARGET_VS_HF:g}x transformers (fp32 folder, aggregate): "
        f"{target(('mlxgp hf-f32', 'transformers hf-f32'), TARGET_VS_HF)}; mlxgp >= {TARGET_VS_MLX_LM:g}x mlx-lm "
        f"(aggregate, like-for-like protocol): 4-bit "
        f"{target(('mlxgp gguf-q4_1' + nl, 'mlx-lm mlx-q4' + nl), TARGET_VS_MLX_LM)}, "
        f"fp32 {target(('mlxgp hf-f32' + nl, 'mlx-lm hf-f32' + nl), TARGET_VS_MLX_LM)}. The figures depend on the "
        "machine's load (recorded in the Machine section); PyTorch's threads suffer most on a busy machine.",
        _plot([e for e in engines if not (e.name == "mlxgp" and e.new_tokens)], ctx),
    ]
    return [table, _summary(ctx, engines)]


def _summary(ctx: Context, engines: list[Engine]) -> Table:
    """Aggregate (decode) tok/s by batch size, one row per engine: the figures of the plot."""
    table = Table(title="Batched generation at a glance: aggregate tok/s (decode tok/s) by batch size",
                  columns=["engine", "model", "new tokens"] + [f"batch {b}" for b in BATCH_SIZES])
    for e in engines:
        if not e.runs:
            continue
        table.rows.append([e.name, e.config, e.tokens(ctx)] + [
            f"{_fmt(e.median(b, 'aggregate'))} ({_fmt(e.median(b, 'decode'))})" if b in e.runs else "-"
            for b in BATCH_SIZES])
    table.notes = ["The figures of the table above (medians), side by side; `-` = not run (mlx-lm protocol)."]
    return table
