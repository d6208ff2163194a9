"""llama.cpp's own libraries, loaded with ctypes: the live reference for its samplers and quantizers.

scripts/fetch_llama_cpp.sh (run by `make setup`) puts node-llama-cpp 3.21.1's prebuilt CPU build
(llama.cpp commit 5b4ebc5) under $MLXGP_CACHE/llama.cpp. This module only loads it and declares the
plain-C types every caller shares; each test or bench worker declares the functions it calls.
"""
import ctypes
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lib_dir() -> Path:
    return Path(os.environ.get("MLXGP_CACHE", ROOT / ".cache")) / "llama.cpp"


class TokenData(ctypes.Structure):  # llama_token_data
    _fields_ = [("id", ctypes.c_int32), ("logit", ctypes.c_float), ("p", ctypes.c_float)]


class TokenDataArray(ctypes.Structure):  # llama_token_data_array
    _fields_ = [("data", ctypes.POINTER(TokenData)), ("size", ctypes.c_size_t),
                ("selected", ctypes.c_int64), ("sorted", ctypes.c_bool)]


_lib = None


def load() -> ctypes.CDLL:
    """libllama with libggml-base / libggml loaded globally and the CPU backends registered."""
    global _lib
    if _lib is not None:
        return _lib
    d = lib_dir()
    if not (d / "libllama.v0.4.0.so").is_file():
        raise RuntimeError(f"llama.cpp libraries missing under {d}: run scripts/fetch_llama_cpp.sh")
    for name in ("libggml-base.so", "libggml.v0.4.0.so"):
        ctypes.CDLL(str(d / name), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(str(d / "libllama.v0.4.0.so"), mode=ctypes.RTLD_GLOBAL)
    ggml = ctypes.CDLL(str(d / "libggml.v0.4.0.so"))
    ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_load_all_from_path(str(d).encode())
    lib.llama_backend_init()
    _lib = lib
    return lib


def ggml_base() -> ctypes.CDLL:
    """libggml-base (ggml_quantize_chunk, ggml_row_size, the type traits); load() first."""
    load()
    return ctypes.CDLL(str(lib_dir() / "libggml-base.so"))


class ModelParams(ctypes.Structure):  # llama_model_params: defaults passed through untouched
    _fields_ = [("_opaque", ctypes.c_uint8 * 512)]


class ContextParams(ctypes.Structure):
    """llama_context_params at 5b4ebc5, the fields callers set: n_ctx, n_batch, n_ubatch, n_seq_max, three
    more uint32 (recurrent-state and output limits; defaults 0, 0, 1), n_threads, n_threads_batch; then
    (offsets read from llama.h's order and checked against llama_context_default_params()) the enums
    rope_scaling_type, pooling_type, attention_type, flash_attn_type at 40-52 and, after the rope/yarn
    floats and the eval callback, type_k and type_v (ggml types) at 104 and 108. The tail is padding."""
    _fields_ = [("n_ctx", ctypes.c_uint32), ("n_batch", ctypes.c_uint32), ("n_ubatch", ctypes.c_uint32),
                ("n_seq_max", ctypes.c_uint32), ("_limits", ctypes.c_uint32 * 3), ("n_threads", ctypes.c_int32),
                ("n_threads_batch", ctypes.c_int32), ("_pad0", ctypes.c_uint8 * 4),
                ("rope_scaling_type", ctypes.c_int32), ("pooling_type", ctypes.c_int32),
                ("attention_type", ctypes.c_int32), ("flash_attn_type", ctypes.c_int32),
                ("_pad1", ctypes.c_uint8 * 48), ("type_k", ctypes.c_int32), ("type_v", ctypes.c_int32),
                ("_rest", ctypes.c_uint8 * 512)]


class Batch(ctypes.Structure):  # llama_batch, returned by llama_batch_get_one and passed back as is
    _fields_ = [("n_tokens", ctypes.c_int32), ("_rest", ctypes.c_uint8 * 128)]


def declare(lib: ctypes.CDLL) -> None:
    """Signatures of the model / context / decode functions the workers and tests call."""
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
    lib.llama_free.argtypes = [ctypes.c_void_p]
    lib.llama_model_free.argtypes = [ctypes.c_void_p]


GGML_TYPE_Q8_0 = 8


def context_params(lib: ctypes.CDLL, n_ctx: int, n_batch: int, threads: int, exact: bool = False,
                   kv_type: int | None = None) -> ContextParams:
    """Defaults (checked, so a layout change fails loudly) with the sizes and threads set. exact: a float32
    KV cache and no flash attention, so llama.cpp's attention is plain float32 arithmetic. kv_type: the KV
    cache's ggml type (llama-cli's --cache-type-k/-v), with flash attention on, which a quantized V cache
    needs."""
    cp = lib.llama_context_default_params()
    assert (cp.n_ctx, cp.n_seq_max, cp.n_threads, cp.n_threads_batch) == (512, 1, 4, 4), \
        "llama_context_params layout changed"
    assert (cp.flash_attn_type, cp.type_k, cp.type_v) == (-1, 1, 1), "llama_context_params layout changed"
    cp.n_ctx = n_ctx
    cp.n_batch = n_batch
    cp.n_ubatch = min(n_batch, 512)
    cp.n_threads = cp.n_threads_batch = threads
    if exact:
        cp.flash_attn_type = 0  # LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.type_k = cp.type_v = 0  # GGML_TYPE_F32
    if kv_type is not None:
        cp.flash_attn_type = 1  # LLAMA_FLASH_ATTN_TYPE_ENABLED
        cp.type_k = cp.type_v = kv_type
    return cp


def logits(gguf: str, ids: list[int], prefill: int, threads: int = 2, repack: bool = True):
    """llama.cpp's logits for ids: one llama_decode of ids[:prefill] (its last position's logits), then one
    per remaining id, as `mlxgp logits --prefill` runs them: rows for positions prefill - 1 .. len - 2
    (float32 KV cache, no flash attention). repack=False: llama.cpp's plain block kernels only."""
    import numpy as np

    lib = load()
    declare(lib)
    mp = lib.llama_model_default_params()
    if not repack:
        # use_extra_bufts (byte 74, after the pointers and the leading bools; default true, checked): off
        # keeps Q4_0 in its stored blocks instead of the AVX-512 repacked layout, whose kernels quantize
        # the activations their own way.
        assert mp._opaque[74] == 1, "llama_model_params layout changed"
        mp._opaque[74] = 0
    model = lib.llama_model_load_from_file(str(gguf).encode(), mp)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {gguf}")
    ctx = lib.llama_init_from_model(model, context_params(lib, len(ids) + 8, max(prefill, 1), threads, exact=True))
    if not ctx:
        lib.llama_model_free(model)
        raise RuntimeError("llama_init_from_model failed")
    n_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))
    rows = []
    try:
        for chunk in [ids[:prefill]] + [[t] for t in ids[prefill:-1]]:
            arr = (ctypes.c_int32 * len(chunk))(*chunk)
            if lib.llama_decode(ctx, lib.llama_batch_get_one(arr, len(chunk))) != 0:
                raise RuntimeError("llama_decode failed")
            rows.append(np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy())
    finally:
        lib.llama_free(ctx)
        lib.llama_model_free(model)
    return np.stack(rows)


class CpuTypeTraits(ctypes.Structure):  # ggml-cpu.h's ggml_type_traits_cpu
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p), ("vec_dot_type", ctypes.c_int),
                ("nrows", ctypes.c_int64)]


_FromFloat = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_VecDot = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.c_void_p,
                           ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_cpu = None


def ggml_cpu() -> ctypes.CDLL:
    """The libggml-cpu variant llama.cpp's backend loader would pick here: the highest ggml_backend_score()
    (0 where the CPU lacks the variant's instructions), initialised."""
    global _cpu
    if _cpu is None:
        load()
        best, best_score = None, 0
        for path in sorted(lib_dir().glob("libggml-cpu-*.so")):
            lib = ctypes.CDLL(str(path))
            score = lib.ggml_backend_score()
            if score > best_score:
                best, best_score = lib, score
        if best is None:
            raise RuntimeError(f"no libggml-cpu variant under {lib_dir()} runs on this CPU")
        best.ggml_cpu_init()
        best.ggml_get_type_traits_cpu.restype = ctypes.POINTER(CpuTypeTraits)
        best.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
        _cpu = best
    return _cpu


def vec_dot_rows(type_id: int, w_rows, x_rows):
    """llama.cpp's CPU product for block rows w_rows (uint8 [N, row bytes]) and float32 x_rows [M, K]: each
    x row converted by the type's from_float to its vec_dot_type (Q8_0 / Q8_1 activations) and dotted with
    every weight row by vec_dot, as ggml's mul_mat does without repacking. Returns float32 [M, N]."""
    import numpy as np

    cpu = ggml_cpu()
    traits = cpu.ggml_get_type_traits_cpu(type_id).contents
    act = cpu.ggml_get_type_traits_cpu(traits.vec_dot_type).contents
    from_float, vec_dot = _FromFloat(act.from_float), _VecDot(traits.vec_dot)
    w_rows = np.ascontiguousarray(w_rows, dtype=np.uint8)
    M, K = x_rows.shape
    out = np.zeros((M, w_rows.shape[0]), np.float32)
    xq = ctypes.create_string_buffer(2 * K)  # Q8_0 / Q8_1 rows hold fewer than 2 bytes per value
    s = ctypes.c_float()
    for m in range(M):
        xm = np.ascontiguousarray(x_rows[m], dtype=np.float32)
        from_float(xm.ctypes.data, ctypes.addressof(xq), K)
        for n in range(w_rows.shape[0]):
            vec_dot(K, ctypes.byref(s), 0, w_rows[n].ctypes.data, 0, ctypes.addressof(xq), 0, 1)
            out[m, n] = s.value
    return out
