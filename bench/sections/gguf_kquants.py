"""llama.cpp's K-quant mixtures loaded natively: greedy decode of the default SmolLM2 file requantized by
llama.cpp's own quantizer (tests/refs/gguf_quant.py: Q4_K_M, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS, cached by content) next to
the Q4_1 original, and mlx-lm on the MLX 4-bit folder of the same model, timed as in the generation
section (same prompt ids, fresh process per run, engines interleaved)."""
import sys

from common import DEFAULT_GGUF, HF_F32_DIR, MLX_Q4_DIR, ROOT
from prompt import prompt_ids

from . import Context, Table, section
from .generation import COLUMNS, ENGINES, Config, Engine, _measure, _rows, _worker

# llama.cpp itself on the same files (libllama through ctypes, the threads mlxgp uses: all cores).
ENGINES.setdefault("llama.cpp", Engine("llama.cpp", _worker("llama_cpp_worker.py")))

FTYPES = ("Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS")


@section("gguf_kquants", "GGUF K-quants")
def run(ctx: Context) -> list[Table]:
    table = Table(title=f"Greedy generation, batch 1, GGUF K-quant and IQ4 files: {ctx.max_new_tokens} new tokens, "
                        f"median of {ctx.repeats} runs", columns=COLUMNS)
    sys.path.insert(0, str(ROOT))
    from tests.refs import gguf_quant

    try:
        files = {f: gguf_quant.cached_quantized(DEFAULT_GGUF, f) for f in FTYPES}
    except (OSError, RuntimeError) as e:
        table.failures.append(f"llama.cpp quantizer unavailable: {e}")
        return [table]
    ids = prompt_ids(HF_F32_DIR / "tokenizer.json")
    configs = [Config(f"gguf-{f.lower()}", p, ["mlxgp", "llama.cpp"], "") for f, p in files.items()]
    configs += [Config("gguf-q4_1", DEFAULT_GGUF, ["mlxgp", "llama.cpp"], ""),
                Config("mlx-q4", MLX_Q4_DIR, ["mlxgp", "mlx-lm"], "")]
    for cfg in configs:
        results = _measure(ctx, cfg, ids)
        table.rows += _rows(cfg, results)
        table.failures += [f"{name} on {cfg.name}: {m.error}" for name, m in results.items() if m.error]
    mix = {f: gguf_quant.tensor_types(p) for f, p in files.items()}
    for f, types in mix.items():
        counts = {}
        for t in types.values():
            counts[t] = counts.get(t, 0) + 1
        table.notes.append(f"{f} tensors: " + ", ".join(f"{n} {t}" for t, n in sorted(counts.items())))
    table.notes.append(
        f"{len(ids)}-token prompt. The K-quant files are llama.cpp's llama_model_quantize (commit 5b4ebc5) "
        "applied to the default Q4_1 file (allow_requantize). On an AVX-512 CPU mlxgp keeps every block type "
        "as stored and multiplies it with its fused block kernel (src/kernels/ggml_rows.cpp); elsewhere the "
        "affine-compatible types become MLX affine group-32 weights. llama.cpp runs the same file through libllama (ctypes, "
        "bench/workers/llama_cpp_worker.py: one llama_decode for the prompt, then one per token, argmax "
        "of the logits, as many threads as cores like mlxgp); its own kernels quantize activations to "
        "8 bits, so its tokens may part from the fp32-activation engines'. mlx-lm cannot read K-quant GGUF "
        "files: its row is the MLX 4-bit folder of the same model. IQ4_NL / IQ4_XS (a non-uniform 4-bit grid "
        "per 32 values) have no affine form: mlxgp keeps them as blocks everywhere and looks each code's "
        "weight up in a 16-entry table.")
    return [table]
