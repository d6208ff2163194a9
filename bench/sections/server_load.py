"""Server under load (issue 16): `mlxgp serve` and `mlx_lm.server` on the same 4-bit MLX folder, driven
by C = 1, 4, 16, 32 concurrent streaming clients (bench/workers/server_load_worker.py), each sending its
requests back to back: aggregate completion tok/s, time to first token and inter-token latency (the gaps
between streamed chunks) at p50 / p99, the issue's target ratios, and docs/server_load.png.

Every request is the same `/v1/completions` body for both servers (a prompt text, so both tokenize it
themselves: the prompt token counts in `usage` are compared), greedy, streamed with usage. Neither server
is told to ignore EOS (mlx_lm.server has no such field; its `logit_bias` would run a logits processor row
by row), so tokens are counted from `usage` and every rate uses the real counts."""
import importlib.metadata
import json
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common import DEFAULT_GGUF, MLX_Q4_DIR, ROOT
from prompt import PROMPT_TEXT
from runner import RunError

from . import Context, Table, section

WORKER = ROOT / "bench" / "workers" / "server_load_worker.py"
PLOT = ROOT / "docs" / "server_load.png"
CONCURRENCY = (1, 4, 16, 32)
# mlxgp's main protocol: requests per client at each concurrency (p99s from hundreds to thousands of
# gaps while the whole mlxgp part stays within a minute or two).
MLXGP_REQUESTS = {1: 4, 4: 2, 16: 2, 32: 2}
# mlx_lm.server's MLX-ops matmuls do ~13 token-forwards/s for this model on this CPU whatever the batch
# (matmul and batching sections), prefill included: 32 clients x (~22 prompt + 128 new tokens) would take
# ~6 min a level. It gets a reduced protocol (16 new tokens, one request per client, two for the single
# client), and mlxgp runs the same protocol too, for a like-for-like ratio.
REDUCED_NEW_TOKENS = 16
REDUCED_REQUESTS = {1: 2, 4: 1, 16: 1, 32: 1}
MLXGP_FLAGS = ["--max-batch", "32", "--max-queue", "64"]
# Prompt i is PROMPT_WORDS words of bench/prompt.py's text read cyclically from word (i * 37) mod the word
# count: the text has 101 words (a prime), so up to 101 prompts start at different words, share no prefix
# beyond a common first word, and mlx_lm.server's prompt cache (on by default) cannot serve one from
# another. 20-30 tokens each: prefill stays a modest share of mlx_lm.server's time.
PROMPT_WORDS = 20
PROMPT_STRIDE = 37
WARMUP_PROMPT = "Hello, my name is"
START_TIMEOUT_S = 120
RUN_TIMEOUT_S = 900
# Targets of issue 16, at TARGET_CLIENTS clients.
TARGET_CLIENTS = 16
TARGET_VS_ONE = 4.0  # mlxgp aggregate at 16 clients / 1 client
TARGET_VS_MLX_LM = 2.0  # mlxgp / mlx_lm.server aggregate, like-for-like protocol
TARGET_ITL_P99 = 3.0  # mlxgp p99 inter-token latency at 16 clients < 3x the 1-client figure


def _prompts(n: int) -> list[str]:
    words = PROMPT_TEXT.split()
    if n > len(words):
        raise RunError(f"{n} prompts asked for, only {len(words)} distinct starting words")
    return [" ".join(words[(i * PROMPT_STRIDE + j) % len(words)] for j in range(PROMPT_WORDS)) for i in range(n)]


def _percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class Level:
    """One load run: C clients, their requests, what the worker reported."""
    clients: int
    requests: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    server_itl_mean: float | None = None  # mlxgp: its own /metrics inter-token histogram over the load

    @property
    def tokens(self) -> int:
        return sum(r["completion_tokens"] or 0 for r in self.requests)

    def aggregate(self) -> float | None:
        return self.tokens / self.wall_s if self.wall_s > 0 else None

    def ttft(self, q: float) -> float | None:
        return _percentile([r["ttft_s"] for r in self.requests if r["ttft_s"] is not None], q)

    def gaps(self) -> list[float]:
        return [b - a for r in self.requests for a, b in zip(r["chunk_s"], r["chunk_s"][1:])]

    def itl(self, q: float) -> float | None:
        return _percentile(self.gaps(), q)


@dataclass
class Engine:
    name: str  # mlxgp | mlx-lm
    new_tokens: int
    requests_per_client: dict[int, int]
    levels: dict[int, Level] = field(default_factory=dict)
    error: str | None = None
    model: Path = MLX_Q4_DIR
    flags: tuple[str, ...] = ()
    config: str = ""  # set for a model or flags other than the 4-bit folder's

    @property
    def label(self) -> str:
        return f"{self.name}{' ' + self.config if self.config else ''}, {self.new_tokens} new tokens"


class Server:
    """A server process on a free local port, its output in a log file; stopped with SIGTERM."""

    def __init__(self, cmd: list[str], port: int | None, log: Path) -> None:
        self.log_path = log
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{port}" if port else None

    def wait_ready(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                raise RunError(f"server exited with {self.proc.returncode}: {tail[0][:300]}")
            if self.url is None:  # mlxgp --port 0 prints the port it bound
                for line in self.log_path.read_text(errors="replace").splitlines():
                    if line.startswith("[serve] model") and " on http://" in line:
                        self.url = line.rsplit(" on ", 1)[1].strip()
            if self.url:
                try:
                    with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                        if r.status == 200:
                            return self.url
                except OSError:
                    pass
            time.sleep(0.25)
        raise RunError(f"server not ready after {START_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # the server itself; it starts no children
                self.proc.wait()
        self.log.close()


def _free_port() -> int:
    """mlx_lm.server cannot report a port it picked (`--port 0`), so pick one for it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(ctx: Context, e: Engine, tmp: Path, tag: str) -> Server:
    log = tmp / f"{tag}.log"
    if e.name == "mlxgp":
        cmd = [str(ctx.mlxgp_bin), "serve", "--model", str(e.model), "--port", "0"] + MLXGP_FLAGS + list(e.flags)
        server = Server(cmd, None, log)
    else:
        port = _free_port()
        # --decode-concurrency 32 = mlxgp's --max-batch (it is also mlx-lm 0.32.2's default); the rest
        # are mlx_lm.server's defaults.
        cmd = [str(ctx.python), "-m", "mlx_lm", "server", "--model", str(MLX_Q4_DIR), "--port", str(port),
               "--decode-concurrency", "32"]
        server = Server(cmd, port, log)
    try:
        server.wait_ready()
    except RunError:
        server.stop()
        raise
    return server


def _load(ctx: Context, url: str, clients: int, per_client: int, max_tokens: int, prompts: list[str],
          tmp: Path) -> Level:
    spec = {"url": url, "concurrency": clients, "requests_per_client": per_client, "max_tokens": max_tokens,
            "prompts": prompts, "timeout_s": RUN_TIMEOUT_S}
    spec_file = tmp / "spec.json"
    spec_file.write_text(json.dumps(spec))
    try:
        proc = subprocess.run([str(ctx.python), str(WORKER), str(spec_file)], capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S + 60)
    except subprocess.TimeoutExpired:
        raise RunError(f"load generator timed out after {RUN_TIMEOUT_S + 60} s") from None
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        raise RunError(f"load generator exit {proc.returncode}: {last[0][:300]}")
    try:
        doc = json.loads(proc.stdout.strip().splitlines()[-1])
        level = Level(clients, doc["requests"], doc["wall_s"])
    except (ValueError, KeyError, IndexError) as ex:
        raise RunError(f"unexpected load generator output ({ex!r}): {proc.stdout[:200]!r}") from None
    errors = [r["error"] for r in level.requests if r["error"]]
    if errors:
        raise RunError(f"{len(errors)} of {len(level.requests)} requests failed, first: {errors[0]}")
    if len(level.requests) != clients * per_client:
        raise RunError(f"{len(level.requests)} requests answered, {clients * per_client} sent")
    return level


def _itl_histogram(url: str) -> tuple[float, float] | None:
    """(sum, count) of mlxgp's server-side inter-token histogram (`GET /metrics`), or None. The load
    generator shares the CPU with the server, so a starved client could bunch chunks together; the
    server's own figure, taken before HTTP, tells such an artefact from the server's behaviour."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        for key in ("sum", "count"):
            if line.startswith(f"mlxgp_inter_token_latency_seconds_{key} "):
                values[key] = float(line.split()[1])
    return (values["sum"], values["count"]) if len(values) == 2 else None


def _run_level(ctx: Context, e: Engine, c: int, tmp: Path) -> None:
    """One concurrency level on a fresh server (no state carried between levels; the prompts of a level
    are all distinct), warmed by one untimed request."""
    per_client = e.requests_per_client[c]
    try:
        server = _start(ctx, e, tmp, f"{e.name}{'-' + e.config if e.config else ''}-n{e.new_tokens}-c{c}")
    except RunError as ex:
        e.error = f"{c} clients: start: {ex}"
        return
    try:
        _load(ctx, server.url, 1, 1, 4, [WARMUP_PROMPT], tmp)
        before = _itl_histogram(server.url) if e.name == "mlxgp" else None
        level = _load(ctx, server.url, c, per_client, e.new_tokens, _prompts(c * per_client), tmp)
        after = _itl_histogram(server.url) if e.name == "mlxgp" else None
        if before and after and after[1] > before[1]:
            level.server_itl_mean = (after[0] - before[0]) / (after[1] - before[1])
    except RunError as ex:
        e.error = f"{c} clients: {ex}"
        return
    finally:
        server.stop()
    e.levels[c] = level
    ctx.log(f"  {e.label:28} {c:2} clients x {per_client}: {level.tokens} tokens in {level.wall_s:.1f} s = "
            f"{_fmt(level.aggregate())} tok/s, TTFT p50/p99 {_ms(level.ttft(50))}/{_ms(level.ttft(99))} ms, "
            f"ITL p50/p99 {_ms(level.itl(50))}/{_ms(level.itl(99))} ms")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.1f}"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1000:,.0f}" if x >= 0.1 else f"{x * 1000:.1f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _x(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def _mlx_lm_version() -> str:
    try:
        return importlib.metadata.version("mlx-lm")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


COLUMNS = ["server", "new tokens", "clients", "requests", "completion tokens", "aggregate tok/s",
           "vs 1 client", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "ITL p99 ms", "ITL p99 vs 1 client",
           "mlxgp/mlx-lm aggregate"]


@section("server_load", "Server under load (`mlxgp serve` vs `mlx_lm.server`)")
def run(ctx: Context) -> list[Table]:
    n = ctx.max_new_tokens
    reduced = min(REDUCED_NEW_TOKENS, n)
    main = Engine("mlxgp", n, MLXGP_REQUESTS)
    ours = Engine("mlxgp", reduced, REDUCED_REQUESTS)
    peer = Engine("mlx-lm", reduced, REDUCED_REQUESTS)
    # For information beside the folder's rows: the default GGUF with llama.cpp's int8 arithmetic, mlxgp's
    # fastest CPU mode for batches (not the peer's weights, so no mlx-lm ratio).
    int8 = Engine("mlxgp", n, MLXGP_REQUESTS, model=DEFAULT_GGUF, flags=("--int8-activations",),
                  config="gguf-q4_1 int8")
    engines = [main, ours, peer, int8]
    missing = ctx.mlxgp_missing()
    if not MLX_Q4_DIR.is_dir():
        for e in engines[:3]:
            e.error = f"4-bit folder missing ({MLX_Q4_DIR}): run bench/prepare_models.py"
    elif missing:
        main.error = ours.error = missing
    if missing or not DEFAULT_GGUF.is_file():
        int8.error = missing or f"default GGUF missing ({DEFAULT_GGUF}): run make setup"
    ctx.log(f"[server_load] {MLX_Q4_DIR.name}: " + ", ".join(e.label for e in engines))
    with tempfile.TemporaryDirectory(prefix="mlxgp-bench-server-") as tmp:
        # Levels outer, engines inner: the like-for-like pair of a level runs back to back, so a drift of
        # the machine's load hits both alike.
        for c in CONCURRENCY:
            for e in engines:
                if not e.error:
                    _run_level(ctx, e, c, Path(tmp))
    return [_table(ctx, engines)]


def _table(ctx: Context, engines: list[Engine]) -> Table:
    main, ours, peer = engines[:3]
    table = Table(title=f"Streaming completions under load: C concurrent clients, greedy, ~{PROMPT_WORDS}-word "
                        f"prompts, up to {main.new_tokens} new tokens (mlx_lm.server and its mlxgp pair: "
                        f"{peer.new_tokens}), one run per level", columns=COLUMNS)
    for e in engines:
        if e.error:
            table.failures.append(f"server_load {e.label}: {e.error}")
            table.rows.append([e.label.rsplit(",", 1)[0], e.new_tokens, f"failed: {e.error}"] + [""] * (len(COLUMNS) - 3))
        one = e.levels.get(1)
        for c, lv in sorted(e.levels.items()):
            pair = ours.levels.get(c) if e is peer else None
            table.rows.append([
                e.label.rsplit(",", 1)[0], e.new_tokens, c, len(lv.requests), lv.tokens, _fmt(lv.aggregate()),
                _x(_ratio(lv.aggregate(), one.aggregate())) if one and c != 1 else "-",
                _ms(lv.ttft(50)), _ms(lv.ttft(99)), _ms(lv.itl(50)), _ms(lv.itl(99)),
                _x(_ratio(lv.itl(99), one.itl(99))) if one and c != 1 else "-",
                _x(_ratio(pair.aggregate(), lv.aggregate())) if pair else "-",
            ])
    table.notes = _notes(ctx, engines)
    return table


def _consistency(ours: Engine, peer: Engine) -> str:
    """Prompt token counts and greedy texts of the like-for-like runs, request by request."""
    same_prompt = same_text = total = 0
    for c, lv in peer.levels.items():
        theirs = {r["prompt_index"]: r for r in ours.levels[c].requests} if c in ours.levels else {}
        for r in lv.requests:
            o = theirs.get(r["prompt_index"])
            if o is None:
                continue
            total += 1
            same_prompt += o["prompt_tokens"] == r["prompt_tokens"]
            # mlx_lm.server's streamed text drops the first token's leading space; compare without it.
            same_text += o["text"].lstrip() == r["text"].lstrip()
    if not total:
        return "Prompt tokens and texts: not compared (no like-for-like pair of runs)."
    return (f"Same request on both servers (like-for-like runs): prompt tokens in `usage` equal for "
            f"{same_prompt}/{total} requests (both tokenize the same text the same way), greedy texts equal "
            f"for {same_text}/{total} (leading whitespace aside; a near-tie may flip under batched arithmetic).")


def _retries(engines: list[Engine]) -> str:
    """Connections a server dropped before answering, which the load generator sent again."""
    parts = []
    for e in engines:
        by_level = {c: sum(r.get("retries", 0) for r in lv.requests) for c, lv in sorted(e.levels.items())}
        if any(by_level.values()):
            parts.append(f"{e.label}: " + ", ".join(f"{n} at {c} clients" for c, n in by_level.items() if n))
    why = (" (mlx_lm.server's ThreadingHTTPServer listens with socketserver's backlog of 5, so a burst of new "
           "connections gets some reset)" if any(p.startswith("mlx-lm") for p in parts) else "")
    return ("Connections dropped before a response (no status line) are sent again, up to 2 retries with a "
            "0.5 s, 1 s backoff, as the openai client does; TTFT counts from the first attempt. "
            + ("Retries: " + "; ".join(parts) + why + "." if parts else "None was needed."))


def _server_side(engines: list[Engine]) -> str:
    """mlxgp's own mean inter-token latency beside the client-side mean, level by level."""
    runs = []
    for e in engines:
        pairs = []
        for c, lv in sorted(e.levels.items()):
            gaps = lv.gaps()
            pairs.append(f"{c}: {_ms(lv.server_itl_mean)} / {_ms(sum(gaps) / len(gaps) if gaps else None)}")
        if pairs:
            runs.append(f"{e.label}, by clients: {'; '.join(pairs)}")
    if not runs:
        return "Server-side ITL: not measured."
    return ("Cross-check of the client's clock: mean ITL from mlxgp's own `/metrics` histogram "
            "(`mlxgp_inter_token_latency_seconds` sum / count over the timed load, per token, taken by the "
            "engine before HTTP) / mean of the client's chunk gaps, ms: " + "; ".join(runs) + ". Equal means "
            "say the client saw what the engine produced; a client-side p50 near 0 with equal means is "
            "chunks arriving bunched (written or read late on the busy CPU).")


def _notes(ctx: Context, engines: list[Engine]) -> list[str]:
    main, ours, peer, int8 = engines
    t = TARGET_CLIENTS
    levels = [lv for e in engines for lv in e.levels.values()]
    reqs = [r for lv in levels for r in lv.requests]
    stopped = sum(r["finish_reason"] == "stop" for r in reqs)
    chunks = {e.name: (sum(len(r["chunk_s"]) for lv in e.levels.values() for r in lv.requests),
                       sum(lv.tokens for lv in e.levels.values())) for e in (main, peer)}
    cached = sum(r["cached_tokens"] or 0 for lv in peer.levels.values() for r in lv.requests)
    prompt_tokens = sorted({r["prompt_tokens"] for r in reqs if r["prompt_tokens"] is not None})

    def level(e: Engine, c: int) -> Level | None:
        return e.levels.get(c)

    def met(r: float | None, goal: float, below: bool = False) -> str:
        if r is None:
            return "not measured"
        return f"{r:.2f}x, {'met' if (r < goal if below else r >= goal) else 'NOT met'}"

    m1, mt, ot, pt = level(main, 1), level(main, t), level(ours, t), level(peer, t)
    vs_one = _ratio(mt.aggregate(), m1.aggregate()) if m1 and mt else None
    vs_peer = _ratio(ot.aggregate(), pt.aggregate()) if ot and pt else None
    itl = _ratio(mt.itl(99), m1.itl(99)) if m1 and mt else None
    q1, qt = level(int8, 1), level(int8, t)
    q_one = _ratio(qt.aggregate(), q1.aggregate()) if q1 and qt else None
    q_itl = _ratio(qt.itl(99), q1.itl(99)) if q1 and qt else None
    chunk_note = ", ".join(f"{name} {c}/{k} ({c / k:.2f} a token)" for name, (c, k) in chunks.items() if k)
    return [
        f"Servers: `mlxgp serve --model {MLX_Q4_DIR.name} --port 0 {' '.join(MLXGP_FLAGS)}` and "
        f"`mlx_lm.server --model {MLX_Q4_DIR.name} --port P --decode-concurrency 32` (mlx-lm {_mlx_lm_version()}; "
        "32 is also its default; every other option at its default, so its prompt cache is on), both on the "
        "4-bit MLX folder bench/prepare_models.py makes. mlxgp's other options are at their defaults: its prompt "
        "cache is on, and `--prefill-step-tokens auto` prefills a joining prompt in parts that take about a decode "
        "step each while rows decode (docs/server.md). Each concurrency level starts a fresh server, sends one "
        f"untimed warm-up request ({WARMUP_PROMPT!r}, 4 tokens), then runs the load.",
        f"Load (bench/workers/server_load_worker.py, asyncio + httpx, one connection per client): C clients "
        "each send their requests back to back, all starting together; requests per client at C = "
        f"{', '.join(map(str, CONCURRENCY))}: mlxgp {main.new_tokens}-token protocol "
        f"{', '.join(str(MLXGP_REQUESTS[c]) for c in CONCURRENCY)}; the {peer.new_tokens}-token protocol "
        f"(mlx_lm.server and its mlxgp pair) {', '.join(str(REDUCED_REQUESTS[c]) for c in CONCURRENCY)}. "
        "Every request: `POST /v1/completions` {prompt, max_tokens, temperature: 0, stream: true, "
        "stream_options: {include_usage: true}}; the prompts of a level are distinct: "
        f"{PROMPT_WORDS} words of bench/prompt.py's text from different starting words "
        f"({', '.join(map(str, prompt_tokens)) or 'n/a'} tokens), the same prompt i for both servers.",
        f"mlx_lm.server's protocol: its MLX-ops matmuls do ~13 token-forwards/s for this model on this CPU "
        f"whatever the batch, prefill included, so it makes {peer.new_tokens} new tokens a request, with the "
        "requests per client above; mlxgp runs that protocol too (rows `new tokens` = "
        f"{ours.new_tokens}) and `mlxgp/mlx-lm aggregate` compares those like-for-like runs.",
        "aggregate tok/s = completion tokens (from each request's `usage`) / the level's wall time, from the "
        "first request sent to the last stream closed. EOS is not suppressed (mlx_lm.server has no request "
        "field for it), so counts are real: "
        f"{stopped} of {len(reqs)} requests ended at EOS (`finish_reason` stop), the rest at max_tokens. "
        "TTFT = request sent -> first chunk with text (queueing and prefill included). ITL = the gaps "
        "between consecutive chunks with text of one stream, pooled over the level's requests; a token "
        "that completes no character sends no chunk, so a gap can span two tokens (chunks per token: "
        f"{chunk_note or 'n/a'}). p50/p99 interpolate between ranks; p99 of 2 or 4 TTFTs is near the "
        "largest.",
        f"`mlxgp gguf-q4_1 int8` rows: the same server and protocol as the first rows on the default GGUF "
        f"({DEFAULT_GGUF.name}) with `--int8-activations` (llama.cpp's arithmetic for its Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / IQ4_NL / Q4_K / Q5_K / Q6_K / IQ4_XS "
        "blocks, the fastest CPU mode from 8 rows on); other weights than mlx_lm.server's, so no peer ratio.",
        _server_side([main, ours, int8]),
        _retries(engines),
        f"mlx_lm.server's prompt cache served {cached} prompt tokens of its timed requests (`usage."
        "prompt_tokens_details.cached_tokens`; distinct prompts keep it near zero).",
        _consistency(ours, peer),
        f"Targets (issue 16), {t} clients: mlxgp aggregate >= {TARGET_VS_ONE:g}x one client "
        f"({main.new_tokens}-token protocol): {met(vs_one, TARGET_VS_ONE)}; mlxgp >= {TARGET_VS_MLX_LM:g}x "
        f"mlx_lm.server (aggregate, {peer.new_tokens}-token protocol): {met(vs_peer, TARGET_VS_MLX_LM)}; "
        f"mlxgp p99 ITL < {TARGET_ITL_P99:g}x the one-client p99 ({main.new_tokens}-token protocol): "
        f"{met(itl, TARGET_ITL_P99, below=True)}; with `--int8-activations` on the default GGUF: aggregate "
        f"{met(q_one, TARGET_VS_ONE)}, p99 ITL {met(q_itl, TARGET_ITL_P99, below=True)}. The load generator runs on the same CPU as the server, and "
        "the figures depend on the machine's load (recorded in the Machine section).",
        _plot(engines, ctx),
    ]


def _plot(engines: list[Engine], ctx: Context) -> str:
    """Writes docs/server_load.png: throughput, TTFT and ITL against concurrency; returns the note."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        return ("Plot: not drawn, matplotlib is missing from .venv (requirements.txt pins it: run "
                "scripts/setup.sh).")
    if not ctx.write_files:
        return "Plot: not written (--no-write)."
    if not any(e.levels for e in engines):
        return "Plot: not drawn (no level measured)."
    try:
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), dpi=110)
        colors = {0: "tab:blue", 1: "tab:cyan", 2: "tab:red", 3: "tab:green"}
        for i, e in enumerate(engines):
            cs = sorted(e.levels)
            if not cs:
                continue
            lv = [e.levels[c] for c in cs]
            kw = dict(color=colors[i], marker="o")
            axes[0].plot(cs, [x.aggregate() for x in lv], label=e.label, **kw)
            for ax, metric in ((axes[1], "ttft"), (axes[2], "itl")):
                for q, style in ((50, "--"), (99, "-")):
                    ys = [getattr(x, metric)(q) for x in lv]
                    ax.plot(cs, [y * 1000 if y is not None else float("nan") for y in ys], linestyle=style, **kw)
        for ax, ylabel, title in ((axes[0], "aggregate completion tok/s", "Throughput"),
                                  (axes[1], "time to first token, ms", "TTFT p50 (dashed) / p99"),
                                  (axes[2], "inter-token latency, ms", "ITL p50 (dashed) / p99")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=8)  # one color per server and protocol in all three panels
        fig.suptitle("Streaming completions under load, SmolLM2-135M 4-bit MLX folder (and the Q4_1 GGUF), "
                     "CPU (same colors in every panel)")
        fig.tight_layout()
        PLOT.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(PLOT)
        plt.close(fig)
    except Exception as ex:  # a plot must not fail the benchmark
        return f"Plot: drawing docs/server_load.png failed ({ex!r})."
    return ("Plot of aggregate tok/s, TTFT and ITL (p50 and p99) against concurrency: "
            "![throughput and latency by concurrency](server_load.png)")
