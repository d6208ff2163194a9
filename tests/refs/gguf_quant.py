"""llama.cpp's own quantizers through ctypes (tests/refs/llama_cpp.py loads the libraries): real GGUF
files in any llama.cpp type, made at test time rather than downloaded.

- quantize_rows(t, "Q6_K"): a 2-D float32 array as that type's blocks (ggml_quantize_chunk), uint8
  [rows, row bytes], ready for gguf.GGUFWriter.add_tensor(..., raw_dtype=...).
- quantize_file(src, dst, "Q4_K_M"): llama_model_quantize on a whole GGUF, with llama.cpp's per-tensor
  type mixture for that ftype (requantizing an already quantized file is allowed).
- cached_quantized(src, "Q4_K_M"): the same, kept under $MLXGP_CACHE/gguf-quant keyed by the source
  file's content hash and the ftype (a few seconds to make, then free).
"""
import ctypes
import hashlib
import os
from pathlib import Path

import numpy as np

from tests.refs import llama_cpp as llama_cpp_ref

# ggml_type ids (ggml.h at 5b4ebc5).
GGML_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q2_K": 10,
              "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "IQ4_NL": 20, "IQ4_XS": 23, "BF16": 30,
              "TQ2_0": 35, "MXFP4": 39}
# llama_ftype ids (llama.h at 5b4ebc5).
FTYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K_M": 12, "Q4_K_S": 14,
          "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "IQ4_NL": 25, "IQ4_XS": 30, "BF16": 32}


class QuantizeParams(ctypes.Structure):
    """The leading fields of llama_model_quantize_params (llama.h at 5b4ebc5: nthread, ftype,
    output_tensor_type, token_embedding_type, then the bools). The tail (more bools and pointers) is
    only ever filled by llama_model_quantize_default_params() and passed back untouched, so it is
    declared as padding: a struct this size is returned through a caller-allocated buffer either way."""
    _fields_ = [("nthread", ctypes.c_int32), ("ftype", ctypes.c_int32),
                ("output_tensor_type", ctypes.c_int32), ("token_embedding_type", ctypes.c_int32),
                ("allow_requantize", ctypes.c_bool), ("quantize_output_tensor", ctypes.c_bool),
                ("only_copy", ctypes.c_bool), ("pure", ctypes.c_bool), ("_rest", ctypes.c_uint8 * 256)]


def _base():
    base = llama_cpp_ref.ggml_base()
    base.ggml_quantize_chunk.restype = ctypes.c_size_t
    base.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                         ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    base.ggml_row_size.restype = ctypes.c_size_t
    base.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    return base


def quantize_rows(t: np.ndarray, qtype: str) -> np.ndarray:
    """t [rows, n] float32 -> uint8 [rows, row bytes] in ggml type `qtype` (no importance matrix)."""
    base = _base()
    t = np.ascontiguousarray(t, dtype=np.float32)
    rows, n = t.shape
    gt = GGML_TYPES[qtype]
    row_bytes = base.ggml_row_size(gt, n)
    out = np.zeros((rows, row_bytes), dtype=np.uint8)
    written = base.ggml_quantize_chunk(gt, t.ctypes.data, out.ctypes.data, 0, rows, n, None)
    assert written == out.nbytes, (qtype, written, out.nbytes)
    return out


def quantize_file(src, dst, ftype: str, threads: int = 2) -> Path:
    lib = llama_cpp_ref.load()
    lib.llama_model_quantize_default_params.restype = QuantizeParams
    lib.llama_model_quantize.restype = ctypes.c_uint32
    lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(QuantizeParams)]
    p = lib.llama_model_quantize_default_params()
    # Defaults at 5b4ebc5: ftype Q8_0, both type overrides GGML_TYPE_COUNT (43), quantize_output_tensor.
    assert (p.ftype, p.output_tensor_type, p.token_embedding_type, p.quantize_output_tensor) == \
        (FTYPES["Q8_0"], 43, 43, True), "llama_model_quantize_params layout changed"
    p.nthread = threads
    p.ftype = FTYPES[ftype]
    p.allow_requantize = True
    rc = lib.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(p))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({src} -> {ftype}) returned {rc}")
    return Path(dst)


def cached_quantized(src, ftype: str) -> Path:
    src = Path(src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("MLXGP_CACHE", llama_cpp_ref.ROOT / ".cache")) / "gguf-quant"
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{src.stem}-{digest}.{ftype}.gguf"
    if not out.exists():
        tmp = out.with_suffix(f".tmp-{os.getpid()}")  # parallel test workers may quantize the same file
        quantize_file(src, tmp, ftype)
        tmp.rename(out)
    return out


def tensor_types(path) -> dict:
    """{tensor name: ggml type name} of a GGUF file (gguf-py's reader)."""
    import gguf

    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
