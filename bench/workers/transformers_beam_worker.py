"""One beam search generation with transformers (PyTorch CPU, fp32 HF folder); prints one JSON line in
the `mlxgp generate --json` layout with stats.beam_tokens_per_s = new tokens / generate() wall time
(prefill included: transformers' streamers do not support beam search, so per-token stamps are not
available).

Usage: transformers_beam_worker.py MODEL_DIR IDS(comma-separated) MAX_NEW_TOKENS KWARGS_JSON"""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import transformers  # noqa: E402
from timing import emit  # noqa: E402


def main() -> None:
    model_dir, ids_arg, max_new, kwargs = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    ids = [int(t) for t in ids_arg.split(",")]
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    input_ids = torch.tensor([ids], dtype=torch.long)
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new,
                             do_sample=False, **kwargs)
        elapsed = time.perf_counter() - start
    tokens = out[0, len(ids):].tolist()
    emit({"prompt_tokens": len(ids), "generated_tokens": len(tokens), "beam_tokens_per_s": len(tokens) / elapsed},
         tokens, torch_threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
