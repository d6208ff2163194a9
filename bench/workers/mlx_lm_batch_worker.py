"""One batched greedy generation with mlx-lm's `batch_generate` (same MLX wheel as mlxgp); prints one JSON
line (bench/workers/batch_timing.py's layout).

Usage: mlx_lm_batch_worker.py MODEL_DIR REQUESTS_JSONL MAX_NEW_TOKENS
Exactly MAX_NEW_TOKENS tokens per request: batch_generate stops a row at the tokenizer's
`eos_token_ids` (its only stop tokens), so it is handed a tokenizer whose EOS list is empty (EOS ignored,
as `mlx_lm_worker.py` does by driving generate_step). An EOS-masking logits processor would do what
min_new_tokens does, but mlx-lm 0.32.2 applies processors row by row (slice, process, concatenate),
which would bill mlx-lm for a cost it does not have without them.
prefill_batch_size = completion_batch_size = the number of prompts: every prompt is prefilled in one
padded batch and all rows decode together from the first step (with the default prefill_batch_size of
8, a batch of 16 would prefill in two halves, the first half decoding while the second is prefilled).
Decode time stamps: batch_generate drives BatchGenerator.next_generated(); a subclass records when each
call returns its tokens (patched in as mlx_lm.generate.BatchGenerator, which batch_generate looks up
when called)."""
import importlib
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mlx.core as mx  # noqa: E402
from batch_timing import StepClock, emit, read_requests  # noqa: E402
from mlx_lm import load  # noqa: E402

mlg = importlib.import_module("mlx_lm.generate")  # `mlx_lm.generate` the attribute is the function


class NoEosTokenizer:
    """The loaded tokenizer with an empty EOS list (batch_generate's stop tokens); decode as usual."""

    eos_token_ids: list[int] = []

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer

    def decode(self, *args, **kwargs):
        return self._tokenizer.decode(*args, **kwargs)


def timed_generator(clock: StepClock, uid_row: dict):
    class TimedBatchGenerator(mlg.BatchGenerator):
        def insert(self, prompts, *args, **kwargs):
            uids = super().insert(prompts, *args, **kwargs)
            uid_row.update({uid: row for row, uid in enumerate(uids)})
            return uids

        def next_generated(self):
            responses = super().next_generated()
            if responses:
                clock.tick(uid_row[r.uid] for r in responses)
            return responses

    return TimedBatchGenerator


def main() -> None:
    model_dir, requests_file, max_new = sys.argv[1], sys.argv[2], int(sys.argv[3])
    prompts = read_requests(requests_file)
    model, tokenizer = load(model_dir)  # evaluates the weights, so loading is not timed
    clock = StepClock(len(prompts))
    mlg.BatchGenerator = timed_generator(clock, {})
    mx.reset_peak_memory()
    clock.begin()
    out = mlg.batch_generate(model, NoEosTokenizer(tokenizer), prompts, max_tokens=max_new, return_token_ids=True,
                             prefill_batch_size=len(prompts), completion_batch_size=len(prompts))
    seconds = time.perf_counter() - clock.start
    stats = clock.stats(seconds)
    stats["peak_memory_bytes"] = mx.get_peak_memory()
    emit(out.token_ids, stats)


if __name__ == "__main__":
    main()
