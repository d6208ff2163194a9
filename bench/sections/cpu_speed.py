"""CPU decode and prefill against llama.cpp on the same GGUF files (issue: CPU speed at the memory-bandwidth
limit). Batch 1, greedy, EOS ignored, same prompt ids, same threads (all cores), engines interleaved, as in
the generation section. Decode is also set against the machine's read bandwidth: every decoded token
streams the whole weight file once, so bandwidth / file size bounds decode tok/s. Long prompts (512, 2k
and 8k tokens) give prefill rates where attention over the prompt matters."""
import dataclasses
import json
import statistics
import sys

from common import DEFAULT_GGUF, HF_F32_DIR, ROOT
from prompt import prompt_ids
from runner import Measurement, RunError, run_json

from . import Context, Table, section
from .generation import (ENGINES, Config, Engine, _fmt, _measure, _mlxgp_argv, _mlxgp_unavailable, _worker,
                         bandwidth_gb_per_s)
from .plotting import save_plot

ENGINES.setdefault("llama.cpp", Engine("llama.cpp", _worker("llama_cpp_worker.py")))
# --int8-activations: llama.cpp's own arithmetic for Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / IQ4_NL / Q4_K / Q5_K / Q6_K / IQ4_XS blocks
# (activations rounded to 8 bits).
ENGINES.setdefault("mlxgp int8", Engine("mlxgp int8", lambda ctx, model, ids, n: _mlxgp_argv(ctx, model, ids, n) +
                                        ["--int8-activations"], _mlxgp_unavailable))
MLXGP_ENGINES = ("mlxgp", "mlxgp int8")
# Quantized KV caches (--kv-bits, mlx-lm's QuantizedKVCache layout: group 64, a float32 scale and bias each)
# and llama.cpp's Q8_0 one (-ctk q8_0 -ctv q8_0, flash attention on), for decode after long prompts.
for _bits in (8, 4):
    ENGINES.setdefault(f"mlxgp int8 kv{_bits}", Engine(
        f"mlxgp int8 kv{_bits}", lambda ctx, model, ids, n, b=_bits: _mlxgp_argv(ctx, model, ids, n) +
        ["--int8-activations", "--kv-bits", str(b)], _mlxgp_unavailable))
# A float16 cache (--kv-cache-dtype float16): llama.cpp's default cache type.
ENGINES.setdefault("mlxgp int8 kv-f16", Engine(
    "mlxgp int8 kv-f16", lambda ctx, model, ids, n: _mlxgp_argv(ctx, model, ids, n) +
    ["--int8-activations", "--kv-cache-dtype", "float16"], _mlxgp_unavailable))
ENGINES.setdefault("llama.cpp kv q8_0", Engine(
    "llama.cpp kv q8_0", lambda ctx, model, ids, n: _worker("llama_cpp_worker.py")(ctx, model, ids, n) + ["--kv-q8_0"]))
# Bytes per cached element (key or value) of each engine's KV cache.
KV_BYTES = {"mlxgp int8": (4.0, "float32"), "mlxgp int8 kv-f16": (2.0, "float16"), "mlxgp int8 kv8": (1 + 8 / 64, "8-bit, group 64"),
            "mlxgp int8 kv4": (0.5 + 8 / 64, "4-bit, group 64"), "llama.cpp": (2.0, "float16"),
            "llama.cpp kv q8_0": (34 / 32, "Q8_0")}
LONG_DECODE_PROMPTS = (2048, 8000)
LONG_DECODE_TOKENS = 64

FTYPES = ("Q4_0", "Q8_0", "Q4_K_M", "IQ4_XS")  # made from the default Q4_1 file by llama.cpp's own quantizer
LONG_PROMPTS = (512, 2048, 8190)  # 8190 + 2 new tokens fill SmolLM2's 8192 positions
PLOT = ROOT / "docs" / "cpu_speed.png"
BOUND_TARGET = 0.70  # of the bandwidth bound (issue)
RATIO_TARGET = 1.5  # over llama.cpp, decode and prefill (issue)


def _files(table: Table) -> dict[str, object]:
    files = {"Q4_1": DEFAULT_GGUF}
    sys.path.insert(0, str(ROOT))
    try:
        from tests.refs import gguf_quant

        files.update({f: gguf_quant.cached_quantized(DEFAULT_GGUF, f) for f in FTYPES})
    except (OSError, RuntimeError, ImportError) as e:
        table.failures.append(f"llama.cpp quantizer unavailable: {e}")
    return files


def _pct(x: float | None, bound: float | None) -> str:
    return "n/a" if not x or not bound else f"{100 * x / bound:.0f}%"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _times(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def _met(r: float | None, target: float) -> str:
    return "not measured" if r is None else f"{r:.2f}x, {'met' if r >= target else 'NOT met'}"


def _plot(ctx: Context, decode: dict[str, dict[str, float | None]], bounds: dict[str, float | None]) -> str:
    def draw(plt) -> None:
        files = list(decode)
        _, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        width = 0.27
        for i, engine in enumerate(MLXGP_ENGINES + ("llama.cpp",)):
            xs = [j + (i - 1) * width for j in range(len(files))]
            ax.bar(xs, [decode[f].get(engine) or 0 for f in files], width, label=engine)
        ax.scatter(range(len(files)), [bounds.get(f) or 0 for f in files], marker="_", s=900, color="black",
                   label="bandwidth bound")
        ax.set_xticks(range(len(files)), files)
        ax.set_ylabel("decode tok/s (batch 1)")
        ax.set_title("Decode on the CPU, SmolLM2-135M GGUF files")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)

    return save_plot(ctx, PLOT, draw, "Plot of decode tok/s per engine and file, with the bandwidth bound: "
                                      "![decode by file](cpu_speed.png)")


@section("cpu_speed", "CPU decode and prefill against llama.cpp")
def run(ctx: Context) -> list[Table]:
    ids = prompt_ids(HF_F32_DIR / "tokenizer.json")
    main = Table(title=f"Batch 1 on GGUF files: {len(ids)}-token prompt, {ctx.max_new_tokens} new tokens, "
                       f"median of {ctx.repeats} runs",
                 columns=["file", "engine", "file MB", "prefill tok/s", "decode tok/s", "bound tok/s",
                          "% of bound", "/ llama.cpp prefill", "/ llama.cpp decode", "tokens = llama.cpp"])
    files = _files(main)
    # The machine's read bandwidth moves from minute to minute (a shared host: 36-58 GB/s within one run), so
    # it is measured before each file's runs and after the last, and the bound takes the median.
    rates = [bandwidth_gb_per_s(ctx, main)]
    measured: dict[str, dict[str, Measurement]] = {}
    for name, path in files.items():
        cfg = Config(f"gguf-{name.lower()}", path, [*MLXGP_ENGINES, "llama.cpp"], "")
        ctx.log(f"[cpu_speed] {cfg.name}: {', '.join(cfg.engines)}")
        measured[name] = _measure(ctx, cfg, ids)
        main.failures += [f"{e} on {cfg.name}: {m.error}" for e, m in measured[name].items() if m.error]
        rates.append(bandwidth_gb_per_s(ctx, main))
    valid = [r for r in rates if r]
    gbps = statistics.median(valid) if valid else None
    decode: dict[str, dict[str, float | None]] = {}
    bounds: dict[str, float | None] = {}
    for name, path in files.items():
        results = measured[name]
        mb = path.stat().st_size / 1e6
        bound = gbps * 1e3 / mb if gbps else None
        bounds[name] = bound
        theirs = results["llama.cpp"]
        decode[name] = {e: m.median("decode_tokens_per_s") for e, m in results.items()}
        for engine, m in results.items():
            if m.error:
                continue
            pre, dec = m.median("prefill_tokens_per_s"), m.median("decode_tokens_per_s")
            same = "-"
            if engine != "llama.cpp" and theirs.runs:  # greedy tokens before the first difference
                n = next((i for i, (a, b) in enumerate(zip(m.token_ids, theirs.token_ids)) if a != b),
                         min(len(m.token_ids), len(theirs.token_ids)))
                same = f"{n}/{len(m.token_ids)}"
            ours = engine in MLXGP_ENGINES
            main.rows.append([
                name, engine, f"{mb:,.0f}", _fmt(pre), _fmt(dec), _fmt(bound), _pct(dec, bound),
                _met(_ratio(pre, theirs.median("prefill_tokens_per_s")), RATIO_TARGET) if ours else "-",
                _met(_ratio(dec, theirs.median("decode_tokens_per_s")), RATIO_TARGET) if ours else "-",
                same])
    main.notes = [
        f"Read bandwidth: {_fmt(gbps)} GB/s, the median of {len(rates)} measurements taken before each file's "
        f"runs and after the last ({', '.join(_fmt(r) for r in rates)} GB/s; bench/workers/bandwidth_worker.py: "
        "best pass of np.max over 1 GiB, one thread per core). This machine's bandwidth moves from minute to "
        "minute (another tenant's load), and every engine's decode with it, so % of bound is approximate: "
        "a run in a fast minute can pass 100%. bound tok/s = bandwidth / file size: each decoded token reads "
        "every weight once (the file is weights plus a few MB of tokenizer metadata, so the bound is slightly "
        "low). "
        f"Target: mlxgp decode >= {BOUND_TARGET:.0%} of the bound and >= {RATIO_TARGET}x llama.cpp.",
        "Files: Q4_1 is the default model as published; Q4_0, Q8_0, Q4_K_M and IQ4_XS are llama.cpp's "
        "llama_model_quantize of it (tests/refs/gguf_quant.py, cached by content). llama.cpp runs the same "
        "file through its prebuilt CPU library (node-llama-cpp 3.21.1's libllama via ctypes, "
        "bench/workers/llama_cpp_worker.py: one llama_decode for the prompt in ubatches of 512, one per "
        "token, argmax), with as many threads as cores like mlxgp. Its kernels quantize activations to 8 "
        "bits, so its tokens may part from mlxgp's float32-activation ones; `mlxgp int8` "
        "(--int8-activations) computes these files' tensors as llama.cpp does (Q4_0 / Q4_1 / Q5_0 / "
        "Q8_0 / IQ4_NL blocks with Q8_0 / Q8_1 activations, Q4_K / Q5_K / Q6_K / IQ4_XS with Q8_K "
        "ones). tokens = llama.cpp: greedy tokens before the first difference.",
    ]
    main.notes.append(_plot(ctx, decode, bounds))

    long = Table(title="Prefill of long prompts, batch 1, default GGUF (Q4_1), 2 new tokens, one run each",
                 columns=["prompt tokens", "mlxgp prefill tok/s", "mlxgp int8 prefill tok/s",
                          "llama.cpp prefill tok/s", "mlxgp/llama.cpp", "mlxgp int8/llama.cpp", "mlxgp prefill s",
                          "mlxgp int8 prefill s", "llama.cpp prefill s"])
    once = dataclasses.replace(ctx, max_new_tokens=2, repeats=1)
    for n in LONG_PROMPTS:
        long_ids = (ids * (n // len(ids) + 1))[:n]
        cfg = Config(f"q4_1-{n}", DEFAULT_GGUF, [*MLXGP_ENGINES, "llama.cpp"], "")
        ctx.log(f"[cpu_speed] {n}-token prompt")
        results = _measure(once, cfg, long_ids)
        long.failures += [f"{e} on a {n}-token prompt: {m.error}" for e, m in results.items() if m.error]
        rate = {e: m.median("prefill_tokens_per_s") for e, m in results.items()}
        goal = 1.0 if n > 4096 else RATIO_TARGET
        secs = {e: _fmt(n / r if r else None) for e, r in rate.items()}
        long.rows.append([n, _fmt(rate["mlxgp"]), _fmt(rate["mlxgp int8"]), _fmt(rate["llama.cpp"]),
                          _met(_ratio(rate["mlxgp"], rate["llama.cpp"]), goal),
                          _met(_ratio(rate["mlxgp int8"], rate["llama.cpp"]), goal),
                          secs["mlxgp"], secs["mlxgp int8"], secs["llama.cpp"]])
    long.notes = [
        "The prompt is the generation prompt's ids repeated to length. prefill tok/s = prompt tokens / time to "
        "the first new token. mlxgp prefills in chunks of 512 tokens (GenerationConfig prefill_chunk_size); "
        "llama.cpp gets the whole prompt in one llama_decode, which it splits into ubatches of 512. Targets: "
        f">= {RATIO_TARGET}x llama.cpp at 512 and 2k tokens, >= llama.cpp at 8k.",
    ]
    return [main, long, _long_decode(ctx, ids)]


def _kv_elements_per_position() -> int:
    """Keys and values of every layer for one position (the default model's config)."""
    c = json.loads((HF_F32_DIR / "config.json").read_text())
    head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    return 2 * c["num_hidden_layers"] * c["num_key_value_heads"] * head_dim


def _long_decode(ctx: Context, ids: list[int]) -> Table:
    """Decode after long prompts, where reading the KV cache adds to reading the weights: float32 and
    quantized caches against llama.cpp's half-precision and Q8_0 ones."""
    engines = list(KV_BYTES)
    table = Table(title=f"Decode after a long prompt, batch 1, default GGUF (Q4_1), {LONG_DECODE_TOKENS} new tokens, "
                        "one run each: KV cache formats",
                  columns=["prompt tokens", "engine", "KV cache", "KV MB at the end", "prefill tok/s", "decode tok/s",
                           "/ llama.cpp decode", "/ fp32 KV decode", "tokens = fp32 KV"])
    once = dataclasses.replace(ctx, max_new_tokens=LONG_DECODE_TOKENS, repeats=1)
    per_position = _kv_elements_per_position()
    for n in LONG_DECODE_PROMPTS:
        long_ids = (ids * (n // len(ids) + 1))[:n]
        ctx.log(f"[cpu_speed] decode after a {n}-token prompt")
        results = _measure(once, Config(f"kv-{n}", DEFAULT_GGUF, engines, ""), long_ids)
        table.failures += [f"{e} after a {n}-token prompt: {m.error}" for e, m in results.items() if m.error]
        dec = {e: m.median("decode_tokens_per_s") for e, m in results.items()}
        ref = results["mlxgp int8"]
        for e in engines:
            m = results[e]
            if m.error:
                continue
            nbytes, kind = KV_BYTES[e]
            same = "-"
            if e.startswith("mlxgp") and e != "mlxgp int8" and ref.runs:
                k = next((i for i, (a, b) in enumerate(zip(m.token_ids, ref.token_ids)) if a != b),
                         min(len(m.token_ids), len(ref.token_ids)))
                same = f"{k}/{len(m.token_ids)}"
            table.rows.append([n, e, kind, f"{nbytes * per_position * (n + LONG_DECODE_TOKENS) / 1e6:,.0f}",
                               _fmt(m.median("prefill_tokens_per_s")), _fmt(dec[e]),
                               _times(_ratio(dec[e], dec["llama.cpp"])), _times(_ratio(dec[e], dec["mlxgp int8"])),
                               same])
    table.notes = [
        "The prompt is the generation prompt's ids repeated to length; decode tok/s = (new tokens - 1) / the time "
        "from the first to the last new token, so it excludes the prefill. Each decoded token reads the whole KV "
        "cache besides the weights (about 95 MB): `KV MB at the end` is its size after the last token.",
        "mlxgp: `--int8-activations`, with `--kv-cache-dtype float16` for keys and values stored as halves "
        "(llama.cpp's default cache type), `--kv-bits 8` / `--kv-bits 4` for the quantized caches (mlx-lm's "
        "QuantizedKVCache: affine, group 64, a float32 scale and bias per group; quantized from the first "
        "position). Decode reads the halves or the quantized rows directly (tiles converted in L1); prefill "
        "chunks attend over them converted to floats. llama.cpp: its default context (float16 cache), and `kv q8_0` with a Q8_0 "
        "cache and flash attention on (as llama-cli -fa on -ctk q8_0 -ctv q8_0).",
        "tokens = fp32 KV: greedy tokens before the first difference from mlxgp's float32 cache (rounding or "
        "quantizing keys and values changes the logits, so a near tie can flip).",
    ]
    return table
