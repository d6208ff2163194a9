"""One greedy generation with transformers (PyTorch, fp32 HF folder, CPU unless told); prints one JSON line.

Usage: transformers_worker.py MODEL_DIR IDS(comma-separated) MAX_NEW_TOKENS
Env BENCH_TORCH_DEVICE (cpu | cuda, default cpu) and BENCH_TORCH_DTYPE (float32 | bfloat16 | float16,
default float32) select where and in which precision it runs (bench/gpu/gpu_check.py uses cuda).
Peak memory is not measured here: PyTorch has no allocator peak on CPU, so the driver reports the
process's max RSS for every engine. Torch keeps its default thread count (reported as torch_threads)."""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers.generation.streamers import BaseStreamer  # noqa: E402
from timing import TokenClock, emit  # noqa: E402


class ClockStreamer(BaseStreamer):
    """generate() calls put() once with the prompt, then once per generated token (batch 1)."""

    def __init__(self, clock: TokenClock) -> None:
        self.clock = clock
        self.seen_prompt = False

    def put(self, value) -> None:
        if not self.seen_prompt:
            self.seen_prompt = True
            return
        self.tick(value)

    def tick(self, value) -> None:
        self.clock.tick(value.numel())

    def end(self) -> None:
        pass


def main() -> None:
    model_dir, ids_arg, max_new = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ids = [int(t) for t in ids_arg.split(",")]
    device = os.environ.get("BENCH_TORCH_DEVICE", "cpu")
    dtype = getattr(torch, os.environ.get("BENCH_TORCH_DTYPE", "float32"))
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    model.eval()

    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    clock = TokenClock()
    # eos_token_id=None: never stop early, like `mlxgp --ignore-eos` and mlx-lm's generate_step
    # (min_new_tokens would instead mask EOS out of the logits and change the greedy path).
    with torch.inference_mode():
        clock.begin()
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                             max_new_tokens=max_new, eos_token_id=None, pad_token_id=0,
                             streamer=ClockStreamer(clock))
    emit(clock.stats(len(ids), None), out[0, len(ids):].tolist(), torch_threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
