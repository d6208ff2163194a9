"""One greedy generation with mlx-lm (same MLX wheel as mlxgp); prints one JSON line.

Usage: mlx_lm_worker.py MODEL_DIR IDS(comma-separated) MAX_NEW_TOKENS
Drives mlx_lm.generate.generate_step directly rather than stream_generate: generate_step never stops
at EOS (stream_generate does), which gives exactly MAX_NEW_TOKENS tokens like `mlxgp --ignore-eos`,
and skips detokenization, which mlxgp --json does once at the end."""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mlx.core as mx  # noqa: E402
from mlx_lm import load  # noqa: E402
from mlx_lm.generate import generate_step  # noqa: E402
from timing import TokenClock, emit  # noqa: E402


def main() -> None:
    model_dir, ids_arg, max_new = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ids = [int(t) for t in ids_arg.split(",")]
    model, _ = load(model_dir)  # evaluates the weights, so loading is not timed as prefill
    prompt = mx.array(ids, dtype=mx.uint32)
    mx.reset_peak_memory()  # mlxgp resets it after loading too: the peak of generation, weights included

    clock = TokenClock()
    out: list[int] = []
    clock.begin()
    for token, _ in generate_step(prompt, model, max_tokens=max_new):  # greedy sampler by default
        clock.tick()
        out.append(int(token))
    emit(clock.stats(len(ids), mx.get_peak_memory()), out)


if __name__ == "__main__":
    main()
