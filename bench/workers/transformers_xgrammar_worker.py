"""Greedy generation with transformers (PyTorch CPU, fp32 HF folder) for B identical rows, with or without
xgrammar's transformers LogitsProcessor over a JSON schema; prints one JSON line in the `mlxgp generate
--json` layout plus "setup_s" (xgrammar's TokenizerInfo and compile time; 0 without a schema).

Usage: transformers_xgrammar_worker.py MODEL_DIR IDS(comma-separated) BATCH MAX_NEW_TOKENS SCHEMA_JSON|-
Without a schema EOS is ignored (eos_token_id=None); the benchmark's schema cannot end before
MAX_NEW_TOKENS, so both variants make exactly MAX_NEW_TOKENS tokens per row."""
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
from timing import TokenClock, emit  # noqa: E402
from transformers_worker import ClockStreamer  # noqa: E402


def main() -> None:
    model_dir, ids_arg, batch, max_new, schema = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    ids = [int(t) for t in ids_arg.split(",")]
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    kwargs = {"eos_token_id": None, "pad_token_id": 0}
    setup = 0.0
    if schema != "-":
        import xgrammar as xgr
        from xgrammar.contrib.hf import LogitsProcessor

        tok = transformers.AutoTokenizer.from_pretrained(model_dir)
        eos = model.generation_config.eos_token_id
        t0 = time.perf_counter()
        info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=model.config.vocab_size, stop_token_ids=eos)
        compiled = xgr.GrammarCompiler(info).compile_json_schema(schema)
        setup = time.perf_counter() - t0
        kwargs = {"eos_token_id": eos, "pad_token_id": eos if isinstance(eos, int) else eos[0],
                  "logits_processor": [LogitsProcessor(compiled)]}
    input_ids = torch.tensor([ids] * batch, dtype=torch.long)
    clock = TokenClock()
    with torch.inference_mode():
        clock.begin()
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new,
                             do_sample=False, streamer=ClockStreamer(clock), **kwargs)
    total = time.perf_counter() - clock.start
    emit(clock.stats(len(ids), None), out[0, len(ids):].tolist(), setup_s=setup, seconds=total,
         torch_threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
