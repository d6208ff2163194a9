"""One greedy generation with llama.cpp itself (libllama through ctypes, tests/refs/llama_cpp.py: commit
5b4ebc5's prebuilt CPU libraries) on a GGUF file; prints one JSON line like the other workers.

Usage: llama_cpp_worker.py GGUF IDS(comma-separated) MAX_NEW_TOKENS [THREADS] [--kv-q8_0]
--kv-q8_0: a Q8_0 KV cache with flash attention (llama-cli -fa on -ctk q8_0 -ctv q8_0); otherwise llama.cpp's
default context (half-precision KV cache, flash attention as it decides).
Prefill is one llama_decode of the prompt, then one llama_decode per generated token; the next token
is the argmax of the last logits (what greedy sampling is), EOS never stops it (like --ignore-eos).
llama.cpp's parameter structs and signatures are declared in tests/refs/llama_cpp.py (only the fields
set; the tail is padding)."""
import ctypes
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
from timing import TokenClock, emit  # noqa: E402

from tests.refs import llama_cpp  # noqa: E402


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--kv-q8_0"]
    kv_type = llama_cpp.GGML_TYPE_Q8_0 if "--kv-q8_0" in sys.argv else None
    path, ids_arg, max_new = args[0], args[1], int(args[2])
    threads = int(args[3]) if len(args) > 3 else os.cpu_count()
    ids = [int(t) for t in ids_arg.split(",")]
    lib = llama_cpp.load()
    llama_cpp.declare(lib)
    model = lib.llama_model_load_from_file(path.encode(), lib.llama_model_default_params())
    if not model:
        raise RuntimeError(f"llama.cpp could not load {path}")
    # The whole prompt in one llama_decode, split by llama.cpp into ubatches of at most 512 (its default).
    ctx = lib.llama_init_from_model(model, llama_cpp.context_params(lib, len(ids) + max_new + 8, max(len(ids), 1),
                                                                    threads, kv_type=kv_type))
    if not ctx:
        raise RuntimeError("llama_init_from_model failed")
    n_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))

    def step(tokens: list[int]) -> int:
        arr = (ctypes.c_int32 * len(tokens))(*tokens)
        if lib.llama_decode(ctx, lib.llama_batch_get_one(arr, len(tokens))) != 0:
            raise RuntimeError("llama_decode failed")
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        return int(logits.argmax())

    clock = TokenClock()
    out: list[int] = []
    clock.begin()
    token = step(ids)
    for _ in range(max_new):
        clock.tick()
        out.append(token)
        if len(out) < max_new:
            token = step([token])
    emit(clock.stats(len(ids), None), out)


if __name__ == "__main__":
    main()
