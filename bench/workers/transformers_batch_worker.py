"""One batched greedy generation with transformers (PyTorch CPU, fp32 HF folder): every prompt of a
requests file in one left-padded batch with an attention mask; prints one JSON line
(bench/workers/batch_timing.py's layout).

Usage: transformers_batch_worker.py MODEL_DIR REQUESTS_JSONL MAX_NEW_TOKENS
min_new_tokens = max_new_tokens masks EOS, so every row makes exactly MAX_NEW_TOKENS tokens (the same
settings as `mlxgp generate --min-new-tokens N --max-new-tokens N`). Position ids come from the attention
mask (generate() does that), so padding does not shift RoPE. Torch keeps its default thread count."""
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import transformers  # noqa: E402
from batch_timing import StepClock, emit, read_requests  # noqa: E402
from transformers_worker import ClockStreamer  # noqa: E402

PAD = 0  # any id: padded positions are masked out (tests/parity/test_batch_generate.py uses 0 too)


class StepStreamer(ClockStreamer):
    """generate() calls put() once with the prompt batch, then once per step with one token per row."""

    def tick(self, value) -> None:
        self.clock.tick(range(value.numel()))


def main() -> None:
    model_dir, requests_file, max_new = sys.argv[1], sys.argv[2], int(sys.argv[3])
    prompts = read_requests(requests_file)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts], dtype=torch.long)
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long)
    clock = StepClock(len(prompts))
    with torch.inference_mode():
        clock.begin()
        out = model.generate(input_ids, attention_mask=attention_mask, do_sample=False, max_new_tokens=max_new,
                             min_new_tokens=max_new, pad_token_id=PAD, streamer=StepStreamer(clock))
        seconds = time.perf_counter() - clock.start
    tokens = out[:, width:].tolist()
    emit(tokens, clock.stats(seconds), torch_threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
