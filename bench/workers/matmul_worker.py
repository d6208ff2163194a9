"""Raw matrix-multiply throughput of one backend, to explain the generation figures: the MLX engines
and transformers call different BLAS libraries. Prints one JSON line
{"blas": "...", "results": [{shape, dtype, gflops}]}.

Usage: matmul_worker.py mlx|torch"""
import json
import re
import sys
import time

# (M, K, N): a square sgemm, a prefill-sized projection (~the benchmark prompt's 124 tokens x hidden 576
# -> SmolLM2's MLP width 1536) and the decode-sized matrix-vector product.
SHAPES = [(1024, 1024, 1024), (124, 576, 1536), (1, 576, 1536)]
MIN_SECONDS = 0.5


def _time(fn) -> float:
    """Seconds per call: repeat until MIN_SECONDS have passed, after one untimed call."""
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < MIN_SECONDS:
        fn()
        n += 1
    return elapsed / n


def mlx_fns(m: int, k: int, n: int):
    import mlx.core as mx

    x, w = mx.random.normal((m, k)), mx.random.normal((n, k))
    wq, scales, biases = mx.quantize(w, group_size=64, bits=4)
    mx.eval(x, w, wq, scales, biases)
    return {
        "float32": lambda: mx.eval(x @ w.T),
        "q4 (quantized_matmul, group 64)": lambda: mx.eval(
            mx.quantized_matmul(x, wq, scales, biases, transpose=True, group_size=64, bits=4)),
    }


def torch_fns(m: int, k: int, n: int):
    import torch

    x, w = torch.randn(m, k), torch.randn(n, k)
    return {"float32": lambda: x @ w.T}


def blas_in_use(backend: str) -> str:
    """The BLAS shared libraries this process has mapped (the MLX wheel bundles its own); torch's CPU
    wheel links MKL statically, so it is named from torch's build flags instead."""
    if backend == "torch":
        import torch

        return "MKL (static)" if torch.backends.mkl.is_available() else "unknown"
    try:
        with open("/proc/self/maps") as maps:
            libs = {line.split()[-1].rsplit("/", 1)[-1] for line in maps if re.search(r"blas|lapack", line)}
    except OSError:
        return "unknown"
    libs = {lib for lib in libs if "numpy" not in lib and "scipy_openblas" not in lib}  # numpy's own
    return ", ".join(sorted(libs)) or "none found"


def main() -> None:
    backend = sys.argv[1]
    make = {"mlx": mlx_fns, "torch": torch_fns}[backend]
    results = []
    for m, k, n in SHAPES:
        for dtype, fn in make(m, k, n).items():
            gflops = 2 * m * k * n / _time(fn) / 1e9
            results.append({"shape": f"{m}x{k}x{n}", "dtype": dtype, "gflops": gflops})
    print(json.dumps({"blas": blas_in_use(backend), "results": results}))


if __name__ == "__main__":
    main()
