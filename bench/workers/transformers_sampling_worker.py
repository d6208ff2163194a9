"""One sampled generation with transformers (PyTorch CPU, fp32 HF folder) and extra generate()
arguments; prints one JSON line in the `mlxgp generate --json` layout.

Usage: transformers_sampling_worker.py MODEL_DIR IDS(comma-separated) MAX_NEW_TOKENS KWARGS_JSON
KWARGS_JSON holds generate() keyword arguments (sequence_bias keys as lists: [[[ids], bias], ...]).
Decode speed is timed per token as in transformers_worker.py."""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import transformers  # noqa: E402
from timing import TokenClock, emit  # noqa: E402
from transformers_worker import ClockStreamer  # noqa: E402


def main() -> None:
    model_dir, ids_arg, max_new, kwargs = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    if "sequence_bias" in kwargs:  # JSON cannot key a dict by a tuple
        kwargs["sequence_bias"] = {tuple(seq): bias for seq, bias in kwargs["sequence_bias"]}
    seed = kwargs.pop("seed", 0)
    ids = [int(t) for t in ids_arg.split(",")]
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    torch.manual_seed(seed)
    input_ids = torch.tensor([ids], dtype=torch.long)
    clock = TokenClock()
    with torch.inference_mode():
        clock.begin()
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new,
                             streamer=ClockStreamer(clock), **kwargs)
    emit(clock.stats(len(ids), None), out[0, len(ids):].tolist(), torch_threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
