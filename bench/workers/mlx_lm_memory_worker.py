"""mlx-lm's greedy generation with a rotating KV cache, recording MLX's peak/active memory at given
token counts; prints one JSON line in the mlxgp --json layout with stats.memory_trace.

Usage: mlx_lm_memory_worker.py MODEL_DIR IDS(comma-separated) MAX_NEW_TOKENS MAX_KV_SIZE TRACE(comma-separated)
The rotating cache is passed explicitly: mlx-lm 0.32.2's generate_step ignores max_kv_size for models
that define make_cache (llama does)."""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mlx.core as mx  # noqa: E402
from mlx_lm import load  # noqa: E402
from mlx_lm.generate import generate_step  # noqa: E402
from mlx_lm.models.cache import RotatingKVCache  # noqa: E402
from timing import TokenClock, emit  # noqa: E402


def main() -> None:
    model_dir, ids_arg, max_new, max_kv = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    trace_at = {int(t) for t in sys.argv[5].split(",")}
    ids = [int(t) for t in ids_arg.split(",")]
    model, _ = load(model_dir)
    cache = [RotatingKVCache(max_size=max_kv, keep=4) for _ in model.layers]
    mx.reset_peak_memory()
    clock = TokenClock()
    out: list[int] = []
    trace = []
    clock.begin()
    for token, _ in generate_step(mx.array(ids, dtype=mx.uint32), model, max_tokens=max_new, prompt_cache=cache):
        clock.tick()
        out.append(int(token))
        if len(out) in trace_at:
            trace.append({"tokens": len(out), "peak_bytes": mx.get_peak_memory(), "active_bytes": mx.get_active_memory()})
    stats = clock.stats(len(ids), mx.get_peak_memory())
    stats["memory_trace"] = trace
    emit(stats, out)


if __name__ == "__main__":
    main()
