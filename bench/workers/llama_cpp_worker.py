"""One greedy generation with llama.cpp itself (libllama through ctypes, tests/refs/llama_cpp.py: commit
5b4ebc5's prebuilt CPU libraries) on a GGUF file; prints one JSON line like the other workers.

Usage: llama_cpp_worker.py GGUF IDS(comma-separated) MAX_NEW_TOKENS [THREADS]
Prefill is one llama_decode of the prompt, then one llama_decode per generated token; the next token
is the argmax of the last logits (what greedy sampling is), EOS never stops it (like --ignore-eos).
llama.cpp's parameter structs are only ever made by its *_default_params() and passed back by value
as the last argument, so only their leading fields are declared (the tail is padding): see
QuantizeParams in tests/refs/gguf_quant.py for the same reasoning."""
import ctypes
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
from timing import TokenClock, emit  # noqa: E402

from tests.refs import llama_cpp  # noqa: E402


class ModelParams(ctypes.Structure):  # llama_model_params: defaults passed through untouched
    _fields_ = [("_opaque", ctypes.c_uint8 * 512)]


class ContextParams(ctypes.Structure):
    """llama_context_params' leading fields at 5b4ebc5: n_ctx, n_batch, n_ubatch, n_seq_max, three more
    uint32 (recurrent-state and output limits; defaults 0, 0, 1), then n_threads, n_threads_batch
    (checked against their defaults, GGML_DEFAULT_N_THREADS = 4, before use)."""
    _fields_ = [("n_ctx", ctypes.c_uint32), ("n_batch", ctypes.c_uint32), ("n_ubatch", ctypes.c_uint32),
                ("n_seq_max", ctypes.c_uint32), ("_limits", ctypes.c_uint32 * 3), ("n_threads", ctypes.c_int32),
                ("n_threads_batch", ctypes.c_int32), ("_rest", ctypes.c_uint8 * 512)]


class Batch(ctypes.Structure):  # llama_batch, returned by llama_batch_get_one and passed back as is
    _fields_ = [("n_tokens", ctypes.c_int32), ("_rest", ctypes.c_uint8 * 128)]


def main() -> None:
    path, ids_arg, max_new = sys.argv[1], sys.argv[2], int(sys.argv[3])
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else os.cpu_count()
    ids = [int(t) for t in ids_arg.split(",")]
    lib = llama_cpp.load()
    lib.llama_model_default_params.restype = ModelParams
    lib.llama_context_default_params.restype = ContextParams
    lib.llama_model_load_from_file.restype = ctypes.c_void_p
    lib.llama_model_load_from_file.argtypes = [ctypes.c_char_p, ModelParams]
    lib.llama_init_from_model.restype = ctypes.c_void_p
    lib.llama_init_from_model.argtypes = [ctypes.c_void_p, ContextParams]
    lib.llama_batch_get_one.restype = Batch
    lib.llama_batch_get_one.argtypes = [ctypes.POINTER(ctypes.c_int32), ctypes.c_int32]
    lib.llama_decode.restype = ctypes.c_int32
    lib.llama_decode.argtypes = [ctypes.c_void_p, Batch]
    lib.llama_get_logits_ith.restype = ctypes.POINTER(ctypes.c_float)
    lib.llama_get_logits_ith.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.llama_model_get_vocab.restype = ctypes.c_void_p
    lib.llama_model_get_vocab.argtypes = [ctypes.c_void_p]
    lib.llama_vocab_n_tokens.restype = ctypes.c_int32
    lib.llama_vocab_n_tokens.argtypes = [ctypes.c_void_p]

    model = lib.llama_model_load_from_file(path.encode(), lib.llama_model_default_params())
    if not model:
        raise RuntimeError(f"llama.cpp could not load {path}")
    cp = lib.llama_context_default_params()
    assert (cp.n_ctx, cp.n_seq_max, cp.n_threads, cp.n_threads_batch) == (512, 1, 4, 4), \
        "llama_context_params layout changed"
    cp.n_ctx = len(ids) + max_new + 8
    # The whole prompt in one llama_decode, split by llama.cpp into ubatches of at most 512 (its default).
    cp.n_batch = max(len(ids), 1)
    cp.n_ubatch = min(cp.n_batch, 512)
    cp.n_threads = cp.n_threads_batch = threads
    ctx = lib.llama_init_from_model(model, cp)
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
