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
