"""One greedy speculative generation with mlx-lm (mlx_lm.generate.speculative_generate_step with a
draft model); prints one JSON line in the mlxgp --json layout, plus how many tokens came from the draft.

Usage: mlx_lm_speculative_worker.py MODEL_DIR DRAFT_DIR IDS(comma-separated) MAX_NEW_TOKENS NUM_DRAFT
Like mlx_lm_worker.py it drives the step generator directly (no EOS stop, no detokenization), so it makes
exactly MAX_NEW_TOKENS tokens like `mlxgp --ignore-eos`."""
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mlx.core as mx  # noqa: E402
from mlx_lm.generate import speculative_generate_step  # noqa: E402
from mlx_lm.utils import load_model  # noqa: E402
from timing import TokenClock, emit  # noqa: E402


def main() -> None:
    model_dir, draft_dir, ids_arg, max_new, num_draft = sys.argv[1:6]
    ids = [int(t) for t in ids_arg.split(",")]
    model, _ = load_model(Path(model_dir))  # evaluates the weights, so loading is not timed as prefill
    draft, _ = load_model(Path(draft_dir))
    prompt = mx.array(ids, dtype=mx.uint32)
    mx.reset_peak_memory()

    clock = TokenClock()
    out: list[int] = []
    from_draft = 0
    clock.begin()
    for token, _, drafted in speculative_generate_step(prompt, model, draft, num_draft_tokens=int(num_draft),
                                                       max_tokens=int(max_new)):  # greedy sampler by default
        clock.tick()
        out.append(int(token))
        from_draft += bool(drafted)
    emit(clock.stats(len(ids), mx.get_peak_memory()), out, from_draft=from_draft)


if __name__ == "__main__":
    main()
